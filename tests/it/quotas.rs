//! Client quotas (issue 9): AlterClientQuotas and DescribeClientQuotas with
//! Kafka's rules, kept across a restart; a librdkafka producer over its
//! byte-rate quota is throttled to it while another is not; a consumer is
//! held to its byte rate; request_percentage throttles a chatty client.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
    MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use crate::bad_input::call;
use crate::common::{metric, Broker};
use crate::kafka::{config, create_topic};

const QUOTA: f64 = 256.0 * 1024.0;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

type Entity<'a> = &'a [(&'a str, Option<&'a str>)];
/// (key, value, remove)
type Ops<'a> = &'a [(&'a str, f64, bool)];

fn alter(broker: &Broker, entries: &[(Entity<'_>, Ops<'_>)], validate_only: bool) -> Vec<(i16, Option<String>)> {
    let request = AlterClientQuotasRequest::default().with_validate_only(validate_only).with_entries(
        entries
            .iter()
            .map(|(entity, ops)| {
                EntryData::default()
                    .with_entity(
                        entity
                            .iter()
                            .map(|(kind, name)| EntityData::default().with_entity_type(s(kind)).with_entity_name(name.map(s)))
                            .collect(),
                    )
                    .with_ops(
                        ops.iter()
                            .map(|(key, value, remove)| OpData::default().with_key(s(key)).with_value(*value).with_remove(*remove))
                            .collect(),
                    )
            })
            .collect(),
    );
    let response: AlterClientQuotasResponse = call(broker, ApiKey::AlterClientQuotas, 1, &request);
    response
        .entries
        .iter()
        .map(|e| (e.error_code, e.error_message.as_ref().map(|m| m.to_string())))
        .collect()
}

/// Sets (or, with `value` None, removes) one quota, which must succeed.
pub(crate) fn set_quota(broker: &Broker, entity: Entity<'_>, key: &str, value: Option<f64>) {
    let op = [(key, value.unwrap_or(0.0), value.is_none())];
    assert_eq!(alter(broker, &[(entity, &op)], false), vec![(0, None)]);
}

/// The entities matching the filter, each as `type=name` pairs with its
/// `key=value` pairs.
pub(crate) fn describe(broker: &Broker, components: &[(&str, i8, Option<&str>)], strict: bool) -> Result<Vec<String>, (i16, String)> {
    let request = DescribeClientQuotasRequest::default().with_strict(strict).with_components(
        components
            .iter()
            .map(|(kind, match_type, name)| {
                ComponentData::default()
                    .with_entity_type(s(kind))
                    .with_match_type(*match_type)
                    .with_match(name.map(s))
            })
            .collect(),
    );
    let response: DescribeClientQuotasResponse = call(broker, ApiKey::DescribeClientQuotas, 1, &request);
    if response.error_code != 0 {
        return Err((
            response.error_code,
            response.error_message.map(|m| m.to_string()).unwrap_or_default(),
        ));
    }
    let mut out: Vec<String> = response
        .entries
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let entity: Vec<String> = e
                .entity
                .iter()
                .map(|c| format!("{}={}", c.entity_type, c.entity_name.as_deref().unwrap_or("<default>")))
                .collect();
            let values: Vec<String> = e.values.iter().map(|v| format!("{}={}", v.key, v.value)).collect();
            format!("{} {}", entity.join(","), values.join(","))
        })
        .collect();
    out.sort();
    Ok(out)
}

const INVALID_REQUEST: i16 = 42;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_altered_and_described_with_kafkas_rules() {
    let mut broker = Broker::start("");
    let ok = (0, None);
    assert_eq!(
        alter(
            &broker,
            &[
                (
                    &[("user", Some("alice"))],
                    &[("producer_byte_rate", 1024.0, false), ("request_percentage", 12.5, false)]
                ),
                (
                    &[("user", Some("alice")), ("client-id", None)],
                    &[("consumer_byte_rate", 2048.0, false)]
                ),
                (&[("client-id", Some("app"))], &[("consumer_byte_rate", 4096.0, false)]),
            ],
            false
        ),
        vec![ok.clone(), ok.clone(), ok.clone()]
    );
    let refused = alter(
        &broker,
        &[
            (&[("user", Some("bob"))], &[("producer_byte_rate", 1.5, false)]),
            (&[("user", Some("bob"))], &[("bytes", 1.0, false)]),
            (&[("client-id", Some("x"))], &[("consumer_byte_rate", -1.0, false)]),
            (&[("ip", Some("10.0.0.1"))], &[("connection_creation_rate", 5.0, false)]),
            (&[], &[("producer_byte_rate", 5.0, false)]),
            (
                &[("client-id", Some("y"))],
                &[("producer_byte_rate", 5.0, false), ("producer_byte_rate", 6.0, false)],
            ),
        ],
        false,
    );
    let messages: Vec<String> = refused
        .iter()
        .map(|(code, m)| {
            assert_eq!(*code, INVALID_REQUEST, "{m:?}");
            m.clone().unwrap()
        })
        .collect();
    assert_eq!(messages[0], "producer_byte_rate cannot be a fractional value.");
    assert_eq!(messages[1], "Ignoring duplicate entity ClientQuotaEntity(user=bob)");
    assert_eq!(messages[2], "Quota consumer_byte_rate must be greater than 0");
    assert!(messages[3].contains("IP quotas"), "{}", messages[3]);
    assert_eq!(messages[4], "Invalid empty client quota entity");
    assert!(messages[5].starts_with("Duplicate quota key producer_byte_rate"), "{}", messages[5]);
    // validate_only checks and changes nothing.
    assert_eq!(
        alter(
            &broker,
            &[(&[("user", Some("carol"))], &[("producer_byte_rate", 9.0, false)])],
            true
        ),
        vec![ok.clone()]
    );

    let everything = vec![
        "client-id=app consumer_byte_rate=4096".to_string(),
        "user=alice producer_byte_rate=1024,request_percentage=12.5".to_string(),
        "user=alice,client-id=<default> consumer_byte_rate=2048".to_string(),
    ];
    assert_eq!(describe(&broker, &[], false).unwrap(), everything);
    assert_eq!(
        describe(&broker, &[("user", 0, Some("alice"))], false).unwrap(),
        everything[1..].to_vec()
    );
    assert_eq!(
        describe(&broker, &[("user", 0, Some("alice"))], true).unwrap(),
        everything[1..2].to_vec()
    );
    assert_eq!(
        describe(&broker, &[("client-id", 1, None)], false).unwrap(),
        everything[2..].to_vec()
    );
    assert_eq!(
        describe(&broker, &[("client-id", 2, None)], true).unwrap(),
        everything[..1].to_vec()
    );
    assert_eq!(
        describe(&broker, &[("user", 0, None)], false).unwrap_err(),
        (
            INVALID_REQUEST,
            "Request specified MATCH_TYPE_EXACT, but set match string to null.".to_string()
        )
    );
    assert_eq!(
        describe(&broker, &[("group", 2, None)], false).unwrap_err().0,
        35,
        "UNSUPPORTED_VERSION"
    );

    // Kept across a restart; a removal removes one key.
    broker.restart();
    assert_eq!(describe(&broker, &[], false).unwrap(), everything);
    set_quota(&broker, &[("user", Some("alice"))], "request_percentage", None);
    assert_eq!(
        describe(&broker, &[("user", 0, Some("alice"))], true).unwrap(),
        vec!["user=alice producer_byte_rate=1024".to_string()]
    );
}

/// A producer's context: what it delivered when, and the longest throttle
/// librdkafka saw in the broker's responses (its statistics).
#[derive(Default)]
struct Measured {
    delivered: Mutex<Vec<(Instant, usize)>>,
    max_throttle_ms: AtomicI64,
}

impl ClientContext for Measured {
    fn stats(&self, statistics: Statistics) {
        for broker in statistics.brokers.values() {
            if let Some(throttle) = &broker.throttle {
                self.max_throttle_ms.fetch_max(throttle.max, Ordering::Relaxed);
            }
        }
    }
}

impl ProducerContext for Measured {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(message) = result {
            self.delivered.lock().push((Instant::now(), message.payload_len()));
        }
    }
}

/// Produces 1,000-byte records to `topic` for `run`, at most `offered`
/// bytes per second (None: as fast as the client is let).
fn produce_for(bootstrap: String, client_id: &'static str, topic: &'static str, run: Duration, offered: Option<f64>) -> Arc<Measured> {
    let producer: ThreadedProducer<Measured> = config(&bootstrap)
        .set("client.id", client_id)
        .set("acks", "all")
        .set("linger.ms", "5")
        // Requests of at most 64 KiB: a throttled client waits a quarter
        // second at a time, so the rate measured over seconds is smooth.
        .set("batch.size", "65536")
        .set("queue.buffering.max.kbytes", "1024")
        .set("statistics.interval.ms", "200")
        .create_with_context(Measured::default())
        .unwrap();
    let context = producer.context().clone();
    let payload = vec![b'q'; 1000];
    let started = Instant::now();
    let mut sent = 0f64;
    while started.elapsed() < run {
        if let Some(rate) = offered {
            if sent > rate * started.elapsed().as_secs_f64() {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
        }
        match producer.send(BaseRecord::<(), [u8]>::to(topic).payload(&payload[..])) {
            Ok(()) => sent += payload.len() as f64,
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    // One more statistics interval, for the last responses' throttle.
    std::thread::sleep(Duration::from_millis(400));
    context
}

/// Bytes per second delivered between `from` and `to` after `start`.
fn rate(measured: &Measured, start: Instant, from: Duration, to: Duration) -> f64 {
    let bytes: usize = measured
        .delivered
        .lock()
        .iter()
        .filter(|(at, _)| (start + from..start + to).contains(at))
        .map(|(_, n)| n)
        .sum();
    bytes as f64 / (to - from).as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_over_its_quota_is_throttled_to_it_and_another_is_not() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "quota", 1, &[]).await;
    set_quota(&broker, &[("client-id", Some("slow"))], "producer_byte_rate", Some(QUOTA));
    let run = Duration::from_secs(9);
    let start = Instant::now();
    let slow = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || produce_for(bootstrap, "slow", "quota", run, None)
    });
    // The other offers four times the quota, paced.
    let fast = tokio::task::spawn_blocking(move || produce_for(bootstrap, "fast", "quota", run, Some(4.0 * QUOTA)));
    let (slow, fast) = (slow.await.unwrap(), fast.await.unwrap());

    // Past the first seconds (one second's burst the budget starts with).
    let (from, to) = (Duration::from_secs(3), Duration::from_secs(9));
    let slow_rate = rate(&slow, start, from, to);
    let fast_rate = rate(&fast, start, from, to);
    eprintln!(
        "slow: {slow_rate:.0} B/s (quota {QUOTA}), max throttle {} ms; fast: {fast_rate:.0} B/s, max throttle {} ms",
        slow.max_throttle_ms.load(Ordering::Relaxed),
        fast.max_throttle_ms.load(Ordering::Relaxed)
    );
    assert!(
        (slow_rate - QUOTA).abs() <= 0.10 * QUOTA,
        "the throttled producer's rate {slow_rate:.0} B/s is not within 10 % of its quota {QUOTA}"
    );
    assert!(
        slow.max_throttle_ms.load(Ordering::Relaxed) > 0,
        "librdkafka saw no throttle_time_ms"
    );
    assert!(fast_rate > 3.0 * QUOTA, "the producer without a quota ran at {fast_rate:.0} B/s");
    assert_eq!(fast.max_throttle_ms.load(Ordering::Relaxed), 0);
    assert!(metric(&broker, "sediment_quota_throttled_responses_total{quota=\"producer_byte_rate\"}") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_is_held_to_its_byte_rate() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "read", 1, &[]).await;
    let written = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || produce_for(bootstrap, "writer", "read", Duration::from_secs(2), Some(4.0 * QUOTA))
    })
    .await
    .unwrap();
    let total: usize = written.delivered.lock().iter().map(|(_, n)| n).sum();
    let count = written.delivered.lock().len();
    set_quota(&broker, &[("client-id", Some("reader"))], "consumer_byte_rate", Some(QUOTA));
    let consumed = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config(&bootstrap)
            .set("client.id", "reader")
            .set("group.id", "readers")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&["read"]).unwrap();
        let started = Instant::now();
        let mut seen = 0;
        while seen < count && started.elapsed() < Duration::from_secs(60) {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(200)) {
                seen += 1;
            }
        }
        (seen, started.elapsed())
    })
    .await
    .unwrap();
    let (seen, took) = consumed;
    assert_eq!(seen, count);
    // One second's burst, then the quota's rate (and the record framing
    // the quota counts, which the payloads leave out).
    let least = Duration::from_secs_f64((total as f64 - QUOTA) / QUOTA * 0.9);
    eprintln!(
        "read {total} B in {took:?}: {:.0} B/s (quota {QUOTA})",
        total as f64 / took.as_secs_f64()
    );
    assert!(took >= least, "read {total} B in {took:?}: faster than the quota allows");
    assert!(metric(&broker, "sediment_quota_throttled_responses_total{quota=\"consumer_byte_rate\"}") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_percentage_throttles_a_chatty_client() {
    let broker = Broker::start("");
    // The raw test client's id is "raw": 0.01 % of a thread is 100 µs of
    // handling a second.
    set_quota(&broker, &[("client-id", Some("raw"))], "request_percentage", Some(0.01));
    let metadata = || -> MetadataResponse { call(&broker, ApiKey::Metadata, 12, &MetadataRequest::default()) };
    let throttled = (0..200).map(|_| metadata().throttle_time_ms).find(|t| *t > 0);
    assert!(throttled.is_some(), "200 requests in a row were never throttled");
    // Without the quota, no throttle.
    set_quota(&broker, &[("client-id", Some("raw"))], "request_percentage", None);
    assert_eq!(metadata().throttle_time_ms, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_mutation_rate_refuses_topics_while_in_debt() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
    let broker = Broker::start("");
    // One partition a second, for the raw client: a second's burst is one.
    set_quota(&broker, &[("client-id", Some("raw"))], "controller_mutation_rate", Some(1.0));
    let create = |version: i16, names: &[&str]| -> CreateTopicsResponse {
        let topics = names
            .iter()
            .map(|n| {
                CreatableTopic::default()
                    .with_name(TopicName(s(n)))
                    .with_num_partitions(2)
                    .with_replication_factor(-1)
            })
            .collect();
        call(
            &broker,
            ApiKey::CreateTopics,
            version,
            &CreateTopicsRequest::default().with_topics(topics),
        )
    };
    let strict = create(7, &["m1", "m2", "m3"]);
    let codes: Vec<i16> = strict.topics.iter().map(|t| t.error_code).collect();
    // The first goes through (into debt), the others wait: 89 is
    // THROTTLING_QUOTA_EXCEEDED.
    assert_eq!(codes, vec![0, 89, 89]);
    assert!(strict.throttle_time_ms > 0, "{}", strict.throttle_time_ms);
    // Versions before 6 cannot be told: created, and throttled.
    let permissive = create(5, &["m2", "m3"]);
    assert_eq!(permissive.topics.iter().map(|t| t.error_code).collect::<Vec<_>>(), vec![0, 0]);
    assert!(permissive.throttle_time_ms > 0);
    assert!(
        metric(
            &broker,
            "sediment_quota_throttled_responses_total{quota=\"controller_mutation_rate\"}"
        ) > 0.0
    );
}

/// A muted connection whose client goes is closed at once, not when its
/// throttle ends: it does not hold a connection slot meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_while_muted_frees_its_connection() {
    let broker = Broker::start("");
    // 0.0001 % of a thread is 1 µs of handling a second: one request owes
    // far more than the test waits.
    set_quota(&broker, &[("client-id", Some("raw"))], "request_percentage", Some(0.0001));
    let metadata = || -> MetadataResponse { call(&broker, ApiKey::Metadata, 12, &MetadataRequest::default()) };
    metadata();
    let throttled = metadata().throttle_time_ms;
    assert!(throttled > 10_000, "{throttled} ms");
    // Each call's connection closed after its response, the second while
    // muted for longer than this waits.
    crate::common::wait_until("the muted connection is closed", 5, || {
        metric(&broker, "sediment_connections") == 0.0
    });
}
