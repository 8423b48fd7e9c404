//! Transactions with real clients: kafka-python's consume-transform-produce
//! loop killed mid-transaction and restarted, aborts, a fenced zombie, and
//! read_committed against read_uncommitted consumers.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{run_python, Broker};

const SCRIPT: &str = "kafka_python_transactions.py";

/// Runs the transform phase until it is mid-transaction, then SIGKILLs it.
/// Returns how many outputs the killed transaction had sent.
fn transform_until_killed(bootstrap: &str) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(SCRIPT);
    let mut child = Command::new("python3")
        .arg(path)
        .args([bootstrap, "transform", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().expect("piped");
    let mut sent = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("readable output");
        if let Some(count) = line.strip_prefix("MID-TRANSACTION ") {
            sent = Some(count.trim().parse().expect("a count"));
            break;
        }
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    sent.expect("the transform reached the middle of a transaction before it was killed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_consume_transform_produce_survives_a_killed_client_and_fences_zombies() {
    let broker = Broker::start("transaction_check_interval_ms = 500\n");
    let bootstrap = broker.bootstrap();
    tokio::task::spawn_blocking(move || {
        run_python(SCRIPT, &[&bootstrap, "setup"]);
        let killed_outputs = transform_until_killed(&bootstrap);
        // The restarted producer fences the killed one and aborts its
        // transaction; the group resumes from the committed offsets.
        let out = run_python(SCRIPT, &[&bootstrap, "transform"]);
        assert!(out.contains("OK transform"), "{out}");
        let out = run_python(SCRIPT, &[&bootstrap, "extras"]);
        assert!(out.contains("OK extras"), "{out}");
        let out = run_python(SCRIPT, &[&bootstrap, "verify", &killed_outputs.to_string()]);
        assert!(out.contains("OK verify"), "{out}");
    })
    .await
    .unwrap();
}
