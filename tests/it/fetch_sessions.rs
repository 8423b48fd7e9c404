//! Fetch sessions (KIP-227) with a real client: kafka-python reads a
//! 1,000-partition topic with incremental fetches, pausing and resuming
//! half of it, and reads exactly what a consumer with full fetches reads.

use crate::bad_input::{call, fetch_request};
use crate::common::{metric, run_python, Broker};
use crate::kafka::{create_topic, produce, producer, record};

const SCRIPT: &str = "kafka_python_fetch_sessions.py";
const PARTITIONS: &str = "1000";

fn requests(broker: &Broker, kind: &str) -> f64 {
    let value = metric(broker, &format!("sediment_fetch_session_requests_total{{kind=\"{kind}\"}}"));
    if value.is_nan() {
        0.0
    } else {
        value
    }
}

/// The digest line of a consume run.
fn digest(out: &str) -> String {
    assert!(out.contains("OK consume"), "{out}");
    out.lines().find(|l| l.starts_with("DIGEST ")).expect("a digest").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_of_1000_partitions_reads_the_same_with_incremental_fetches() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    tokio::task::spawn_blocking(move || {
        run_python(SCRIPT, &[&bootstrap, "setup", "wide", PARTITIONS, "6000"]);
        let incremental = digest(&run_python(
            SCRIPT,
            &[&bootstrap, "consume", "wide", PARTITIONS, "1", "6000", "3000"],
        ));
        let sessions = requests(&broker, "incremental");
        // Reading 9,000 records in small responses takes many fetches, all
        // but the first of each session incremental.
        assert!(sessions >= 10.0, "incremental fetches: {sessions}");
        assert!(requests(&broker, "session_new") >= 1.0);
        assert_eq!(requests(&broker, "session_error"), 0.0);
        assert_eq!(requests(&broker, "session_refused"), 0.0);

        let full = digest(&run_python(SCRIPT, &[&bootstrap, "consume", "wide", PARTITIONS, "0", "9000", "0"]));
        assert_eq!(incremental, full);
        assert!(full.ends_with(" 9000"), "{full}");
        // The second consumer asked for no session.
        assert_eq!(requests(&broker, "incremental"), sessions);
        assert!(requests(&broker, "full") >= 10.0);
    })
    .await
    .unwrap();
}

/// The session rules on the wire: a new session answers every partition,
/// an incremental fetch only what changed; a repeated epoch, an unknown
/// session and a closed one are refused with Kafka's codes; a full cache
/// serves a new consumer without a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_follow_kafkas_rules_on_the_wire() {
    use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};
    use kafka_protocol::ResponseError;

    let broker = Broker::start("fetch_session_cache_slots = 1\n");
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "s", 1, &[]).await;
    let fetch = |session_id: i32, epoch: i32| -> FetchResponse {
        let mut req: FetchRequest = fetch_request("s", 0, 0, 1 << 20);
        req.session_id = session_id;
        req.session_epoch = epoch;
        if epoch > 0 {
            // An incremental fetch names only what changed: nothing here.
            req.topics.clear();
        }
        call(&broker, ApiKey::Fetch, 12, &req)
    };
    let partitions = |r: &FetchResponse| r.responses.iter().map(|t| t.partitions.len()).sum::<usize>();

    let created = fetch(0, 0);
    let id = created.session_id;
    assert!(id > 0, "a new session's id: {id}");
    assert_eq!(partitions(&created), 1);
    // Nothing new: an empty answer.
    let quiet = fetch(id, 1);
    assert_eq!((quiet.error_code, partitions(&quiet)), (0, 0));
    produce(&producer(&bootstrap, &[]), "s", &[record(0, 10)]).await;
    let news = fetch(id, 2);
    assert_eq!(partitions(&news), 1);
    assert!(news.responses[0].partitions[0].records.as_ref().is_some_and(|r| !r.is_empty()));
    assert_eq!(news.responses[0].partitions[0].high_watermark, 1);

    assert_eq!(fetch(id, 2).error_code, ResponseError::InvalidFetchSessionEpoch.code());
    assert_eq!(fetch(id + 1, 1).error_code, ResponseError::FetchSessionIdNotFound.code());
    // The one slot is taken by a session used just now: served without one.
    let refused = fetch(0, 0);
    assert_eq!((refused.error_code, refused.session_id, partitions(&refused)), (0, 0, 1));
    // Closing it (epoch -1) is a full, sessionless fetch.
    let closing = fetch(id, -1);
    assert_eq!((closing.session_id, partitions(&closing)), (0, 1));
    assert_eq!(fetch(id, 3).error_code, ResponseError::FetchSessionIdNotFound.code());
    assert!(fetch(0, 0).session_id > 0, "the freed slot serves a new session");
}
