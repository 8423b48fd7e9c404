//! Graceful shutdown (SIGTERM): connections stop taking requests and finish
//! the ones under way, long polls are answered at once, then background work
//! stops and the logs are flushed, and the process exits 0.

use std::io::{Read, Write};

use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Decodable;

use crate::bad_input::{connect, encode_batch_of, fetch_request, produce_raw, read_response, request};
use crate::common::Broker;
use crate::kafka::{consume_all, create_topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_requests_under_way_and_exits_cleanly() {
    let mut broker = Broker::start_limited("shutdown_timeout_ms = 10000\n", 1 << 30);
    create_topic(&broker.bootstrap(), "drained", 1, &[]).await;
    tokio::task::block_in_place(|| {
        let mut producer = connect(&broker);
        for _ in 0..3 {
            assert_eq!(produce_raw(&mut producer, "drained", encode_batch_of(1, 10)), 0);
        }
        // A long poll for data that will not come before the stop (20 s wait;
        // the socket gives up reading after 5 s).
        let fetch = fetch_request("drained", 3, 20_000, 1 << 20);
        let mut parked = connect(&broker);
        parked.write_all(&request(ApiKey::Fetch, 4, &fetch)).unwrap();
        let mut idle = connect(&broker);
        crate::common::wait_until("both connections are open", 10, || {
            crate::common::metric(&broker, "sediment_connections") >= 3.0
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        let status = broker.terminate();
        assert!(status.success(), "exit status {status}");
        // The long poll was answered, not cut off.
        let mut response = read_response(&mut parked);
        ResponseHeader::decode(&mut response, 0).unwrap();
        let fetched = FetchResponse::decode(&mut response, 4).unwrap();
        assert_eq!(fetched.responses[0].partitions[0].error_code, 0);
        assert_eq!(fetched.responses[0].partitions[0].high_watermark, 3);
        // An idle connection was closed.
        let mut rest = Vec::new();
        assert_eq!(idle.read_to_end(&mut rest).unwrap(), 0);
    });
    broker.restart();
    let b = broker.bootstrap();
    let consumed = tokio::task::spawn_blocking(move || consume_all(&b, "drained", 1, 3, &[]))
        .await
        .unwrap();
    assert_eq!(consumed[&0].len(), 3);
}

/// A whole broker built in-process on listeners the caller bound
/// (`node::run_on`), as a test or a simulation would: it serves a client and
/// stops when told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_runs_in_process_on_given_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = sediment::config::Config {
        data_dir: dir.path().join("data"),
        listen: address,
        http_listen: http.local_addr().unwrap(),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let broker = tokio::spawn(sediment::node::run_on(config, vec![listener], http, async move {
        let _ = stopped.await;
    }));
    let bootstrap = address.to_string();
    let producer = crate::kafka::producer(&bootstrap, &[]);
    let records: Vec<_> = (0..100).map(|i| crate::kafka::record(i, 10)).collect();
    let placed = crate::kafka::produce(&producer, "in-process", &records).await;
    let consumed = tokio::task::block_in_place(|| crate::kafka::consume_all(&bootstrap, "in-process", 1, records.len(), &[]));
    crate::kafka::assert_exact(&records, &placed, &consumed);
    stop.send(()).unwrap();
    broker.await.unwrap().unwrap();
}
