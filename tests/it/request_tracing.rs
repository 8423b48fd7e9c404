//! Per-request tracing: every request runs in a span naming its API,
//! version, client id and correlation id, and one slower than
//! `slow_request_threshold_ms` is logged at INFO with its time split by
//! phase. A Fetch's long poll is waiting the client asked for, not slowness.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, MetadataRequest};

use crate::bad_input::{connect, fetch_request, read_response, request};
use crate::common::{metric, Broker};
use crate::kafka::{create_topic, produce, producer, record};

/// The `slow request` lines of a broker's log, each as its fields (span
/// fields and event fields alike, quotes removed).
fn slow_requests(log: &str) -> Vec<BTreeMap<String, String>> {
    log.lines()
        .filter(|l| l.contains(" slow request "))
        .map(|l| {
            l.split([' ', '{', '}', ':'])
                .filter_map(|field| field.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect()
        })
        .collect()
}

fn ms(fields: &BTreeMap<String, String>, name: &str) -> f64 {
    fields
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
}

const PHASES: [&str; 8] = [
    "memory_wait_ms",
    "read_ms",
    "local_ms",
    "fsync_ms",
    "replication_ms",
    "wait_ms",
    "response_queue_ms",
    "response_write_ms",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_of_zero_logs_every_request_with_its_span_and_phases() {
    let broker = Broker::start("slow_request_threshold_ms = 0");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "traced", 1, &[]).await;
    let sent: Vec<_> = (0..50).map(|i| record(i, 100)).collect();
    produce(&producer(&bootstrap, &[("client.id", "tracing-probe")]), "traced", &sent).await;

    let log = broker.log();
    let produces: Vec<_> = slow_requests(&log)
        .into_iter()
        .filter(|f| f.get("api").map(String::as_str) == Some("Produce"))
        .collect();
    assert!(!produces.is_empty(), "no Produce request logged:\n{log}");
    for fields in &produces {
        assert_eq!(fields.get("client_id").map(String::as_str), Some("tracing-probe"), "{fields:?}");
        assert!(fields.get("correlation_id").is_some_and(|c| c.parse::<i32>().is_ok()), "{fields:?}");
        assert!(fields.get("version").is_some_and(|v| v.parse::<i16>().is_ok()), "{fields:?}");
        // The phases add up to the total (each is rounded to a microsecond).
        let sum: f64 = PHASES.iter().map(|p| ms(fields, p)).sum();
        assert!((sum - ms(fields, "total_ms")).abs() < 0.01, "{fields:?}");
    }
    // An acks=all produce waits for its fsync, and on a single node for
    // nothing beyond it.
    assert!(produces.iter().any(|f| ms(f, "fsync_ms") > 0.0), "{produces:?}");
    let produced = metric(&broker, "sediment_slow_requests_total{api=\"Produce\"}");
    assert!(produced >= produces.len() as f64, "{produced} counted, {} logged", produces.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_not_slow_but_a_slowly_sent_request_is() {
    let broker = Broker::start("slow_request_threshold_ms = 200");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "quiet", 1, &[]).await;
    tokio::task::block_in_place(|| {
        // A fetch of an empty partition waits out its 800 ms.
        let mut s = connect(&broker);
        s.write_all(&request(ApiKey::Fetch, 4, &fetch_request("quiet", 0, 800, 1 << 20)))
            .unwrap();
        read_response(&mut s);
        // A Metadata request whose body comes 400 ms after its length.
        let frame = request(ApiKey::Metadata, 4, &MetadataRequest::default());
        s.write_all(&frame[..4]).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        s.write_all(&frame[4..]).unwrap();
        read_response(&mut s);
    });
    crate::common::wait_until("the slow Metadata request logged", 10, || {
        metric(&broker, "sediment_slow_requests_total{api=\"Metadata\"}") == 1.0
    });
    let log = broker.log();
    let slow = slow_requests(&log);
    assert!(
        !slow.iter().any(|f| f.get("api").map(String::as_str) == Some("Fetch")),
        "a long poll was logged as slow:\n{log}"
    );
    let metadata = slow
        .iter()
        .find(|f| f.get("api").map(String::as_str) == Some("Metadata"))
        .unwrap_or_else(|| panic!("no slow Metadata line:\n{log}"));
    assert_eq!(metadata.get("client_id").map(String::as_str), Some("raw"));
    assert_eq!(metadata.get("correlation_id").map(String::as_str), Some("9"));
    assert!(ms(metadata, "read_ms") >= 350.0, "{metadata:?}");
    assert!(metric(&broker, "sediment_slow_requests_total{api=\"Fetch\"}").is_nan());
}

/// An OTLP/HTTP collector on a free port: it answers every export with
/// success and keeps the spans, as JSON.
struct Collector {
    address: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Collector {
    fn start() -> Collector {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    // One export per request, on a kept-alive connection.
                    loop {
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some((name, value)) = line.split_once(':') {
                                if name.eq_ignore_ascii_case("content-length") {
                                    length = value.trim().parse().unwrap();
                                }
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let export: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                                for span in scope["spans"].as_array().into_iter().flatten() {
                                    let mut span = span.clone();
                                    span["resource"] = resource["resource"].clone();
                                    kept.lock().unwrap().push(span);
                                }
                            }
                        }
                        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Collector { address, spans }
    }

    fn spans(&self) -> Vec<serde_json::Value> {
        self.spans.lock().unwrap().clone()
    }
}

/// An OTLP attribute list as key → value text.
fn attributes(list: &serde_json::Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| {
            let value = kv["value"].as_object()?.values().next()?;
            let text = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
            Some((kv["key"].as_str()?.to_string(), text))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_over_otlp_as_traces_of_their_own() {
    let collector = Collector::start();
    let config = format!(
        "otlp_endpoint = \"http://{}/v1/traces\"\notlp_protocol = \"http/json\"\nslow_request_threshold_ms = 0\nbroker_id = 7\n",
        collector.address
    );
    let broker = Broker::start_with_env(&config, &[("OTEL_BSP_SCHEDULE_DELAY".to_string(), "100".to_string())]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "exported", 1, &[]).await;
    let sent: Vec<_> = (0..20).map(|i| record(i, 100)).collect();
    produce(&producer(&bootstrap, &[("client.id", "otel-probe")]), "exported", &sent).await;

    let produce_span = |spans: &[serde_json::Value]| {
        spans
            .iter()
            .find(|s| {
                let a = attributes(&s["attributes"]);
                s["name"] == "request"
                    && a.get("api").map(String::as_str) == Some("Produce")
                    && a.get("client_id").map(String::as_str) == Some("otel-probe")
            })
            .cloned()
    };
    tokio::task::block_in_place(|| {
        crate::common::wait_until("a Produce span at the collector", 30, || produce_span(&collector.spans()).is_some())
    });
    let spans = collector.spans();
    let span = produce_span(&spans).unwrap();
    let fields = attributes(&span["attributes"]);
    assert!(fields.get("correlation_id").is_some_and(|c| c.parse::<i32>().is_ok()), "{span}");
    assert!(fields.get("version").is_some_and(|v| v.parse::<i16>().is_ok()), "{span}");
    // A trace of its own: no parent, not the connection's child.
    assert!(span["parentSpanId"].as_str().unwrap_or("").is_empty(), "{span}");
    assert!(!spans.iter().any(|s| s["name"] == "connection"), "a connection span was exported");
    let resource = attributes(&span["resource"]["attributes"]);
    assert_eq!(resource.get("service.name").map(String::as_str), Some("sediment"));
    assert_eq!(resource.get("service.instance.id").map(String::as_str), Some("7"));
    // The slow-request line (threshold 0) is the span's event, with its timings.
    let slow = span["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "slow request")
        .unwrap_or_else(|| panic!("no slow request event: {span}"));
    let timings = attributes(&slow["attributes"]);
    assert!(timings.get("total_ms").is_some_and(|t| t.parse::<f64>().is_ok()), "{slow}");
    assert!(timings.contains_key("fsync_ms"), "{slow}");
}
