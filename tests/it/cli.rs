//! The operator's command line against a live broker: every `topic`
//! subcommand, its JSON output parsed, and bad input answered with one line
//! and a meaningful exit code, never a panic or a hang.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{free_port, Broker};

pub(crate) fn sediment(brokers: &str, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_sediment"))
        .args(args)
        .env("SEDIMENT_BROKERS", brokers)
        .env_remove("RUST_LOG")
        .output()
        .expect("sediment runs");
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("panicked"),
        "{args:?} panicked: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a command that must succeed; returns its stdout.
fn ok(brokers: &str, args: &[&str]) -> String {
    let output = sediment(brokers, args);
    assert!(
        output.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn json(brokers: &str, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    let out = ok(brokers, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

/// Runs a command that must fail: its exit code and its stderr, one line.
fn fails(brokers: &str, args: &[&str]) -> (i32, String) {
    let output = sediment(brokers, args);
    let stderr = String::from_utf8_lossy(&output.stderr).trim_end().to_string();
    assert!(!output.status.success(), "{args:?} succeeded");
    (output.status.code().unwrap_or(-1), stderr)
}

#[test]
fn topic_subcommands_against_a_live_broker() {
    let broker = Broker::start("");
    let b = broker.bootstrap();

    let created = json(&b, &["topic", "create", "cli-orders", "-p", "3", "-c", "retention.ms=3600000"]);
    assert_eq!(created["partitions"], 3);
    assert_eq!(created["replication_factor"], 1);
    assert!(ok(&b, &["topic", "create", "cli-dry", "--dry-run"]).contains("would create topic cli-dry"));

    let listed = json(&b, &["topic", "list"]);
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|t| t["topic"].as_str().unwrap()).collect();
    assert!(names.contains(&"cli-orders") && !names.contains(&"cli-dry"), "{names:?}");
    assert!(ok(&b, &["topic", "list"]).starts_with("NAME"), "a text table");

    let described = json(&b, &["topic", "describe", "cli-orders"]);
    let topic = &described[0];
    assert_eq!(topic["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(topic["partitions"][0]["leader"], 0, "the single node's broker id");
    assert_eq!(topic["partitions"][2]["high_watermark"], 0);
    assert_eq!(topic["configs"]["retention.ms"]["value"], "3600000");
    assert_eq!(topic["configs"]["retention.ms"]["default"], false);
    assert_eq!(topic["configs"]["cleanup.policy"]["default"], true);

    ok(
        &b,
        &[
            "topic",
            "alter-config",
            "cli-orders",
            "--set",
            "retention.ms=7200000",
            "--set",
            "segment.ms=600000",
        ],
    );
    ok(&b, &["topic", "alter-config", "cli-orders", "--delete", "segment.ms"]);
    let configs = &json(&b, &["topic", "describe", "cli-orders"])[0]["configs"];
    assert_eq!(configs["retention.ms"]["value"], "7200000");
    assert_eq!(configs["segment.ms"]["default"], true, "deleted back to its default");

    let grown = json(&b, &["topic", "add-partitions", "cli-orders", "-n", "2"]);
    assert_eq!(grown["partitions"], 5);
    let text = ok(&b, &["topic", "describe", "cli-orders"]);
    assert!(text.contains("partitions 5") && text.contains("retention.ms"), "{text}");

    let cluster = json(&b, &["cluster", "info"]);
    assert_eq!(cluster["brokers"].as_array().unwrap().len(), 1);
    assert_eq!(cluster["partitions"], 5);
    assert_eq!(cluster["healthy"], true);
    assert!(ok(&b, &["cluster", "health"]).starts_with("healthy"));

    assert_eq!(json(&b, &["topic", "delete", "cli-orders"])["deleted"][0], "cli-orders");
    let (code, line) = fails(&b, &["topic", "describe", "cli-orders"]);
    assert_eq!(code, 1);
    assert!(line.starts_with("sediment: UNKNOWN_TOPIC_OR_PARTITION: topic cli-orders"), "{line}");
    assert_eq!(line.lines().count(), 1);
}

#[test]
fn bad_input_gets_one_line_and_an_exit_code() {
    let broker = Broker::start("");
    let b = broker.bootstrap();
    ok(&b, &["topic", "create", "cli-bad"]);

    let refused = [
        (vec!["topic", "create", "cli-bad"], "TOPIC_ALREADY_EXISTS"),
        (vec!["topic", "create", "bad name!"], "INVALID_TOPIC_EXCEPTION"),
        (vec!["topic", "create", "cli-x", "-c", "retention.ms=soon"], "INVALID_CONFIG"),
        (
            vec!["topic", "alter-config", "cli-bad", "--set", "no.such.config=1"],
            "INVALID_CONFIG",
        ),
        (vec!["topic", "delete", "cli-missing"], "UNKNOWN_TOPIC_OR_PARTITION"),
        (
            vec!["topic", "add-partitions", "cli-missing", "-n", "1"],
            "UNKNOWN_TOPIC_OR_PARTITION",
        ),
    ];
    for (args, name) in refused {
        let (code, line) = fails(&b, &args);
        assert_eq!(code, 1, "{args:?}: {line}");
        assert!(line.starts_with(&format!("sediment: {name}")), "{args:?}: {line}");
        assert_eq!(line.lines().count(), 1, "{line}");
    }

    let usage = [
        vec!["topic", "create"],
        vec!["topic", "frobnicate"],
        vec!["topic", "create", "t", "-p", "many"],
        vec!["topic", "create", "t", "-c", "novalue"],
        vec!["topic", "alter-config", "cli-bad"],
        vec!["topic", "add-partitions", "cli-bad", "-n", "0"],
        vec!["topic", "list", "--format", "yaml"],
    ];
    for args in usage {
        let (code, line) = fails(&b, &args);
        assert_eq!(code, 2, "{args:?}: {line}");
    }
    let (code, line) = fails("not-an-address", &["topic", "list"]);
    assert_eq!((code, line.lines().count()), (2, 1), "{line}");

    // Nothing listens there: refused at once.
    let closed = format!("127.0.0.1:{}", free_port());
    let (code, line) = fails(&closed, &["topic", "list"]);
    assert_eq!(code, 3, "{line}");
    assert!(line.contains("cannot reach any broker") && line.lines().count() == 1, "{line}");

    // Something listens and never answers: the timeout ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_address = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let (code, line) = fails(&silent_address, &["topic", "list", "--timeout-ms", "1000"]);
    assert_eq!(code, 3, "{line}");
    assert!(started.elapsed() < Duration::from_secs(20), "bounded by --timeout-ms");
    drop(silent);
}

#[test]
fn shell_completions_cover_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = ok("127.0.0.1:1", &["completion", shell]);
        assert!(
            script.contains("topic") && script.contains("add-partitions") && script.contains("health"),
            "{shell}"
        );
    }
    // The bash script parses.
    let script = ok("127.0.0.1:1", &["completion", "bash"]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), script).unwrap();
    let status = Command::new("bash").arg("-n").arg(file.path()).status().unwrap();
    assert!(status.success());
    let (code, _) = fails("127.0.0.1:1", &["completion", "powershell-9"]);
    assert_eq!(code, 2);
}

/// A librdkafka group consumes part of a topic, commits and stops: `group
/// describe` shows the lag it left; `group seek` moves its offsets and a
/// restarted consumer starts there; a group with a live member refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_subcommands_show_lag_and_seek_a_stopped_group() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::Message;

    let broker = Broker::start("");
    let b = broker.bootstrap();
    crate::kafka::create_topic(&b, "cli-lag", 2, &[]).await;
    let records: Vec<_> = (0..100).map(|i| crate::kafka::record(i, 10)).collect();
    let placed = crate::kafka::produce(&crate::kafka::producer(&b, &[]), "cli-lag", &records).await;
    let per_partition = |p: i32| placed.iter().filter(|(q, _)| *q == p).count() as i64;

    let member = || -> BaseConsumer {
        let consumer: BaseConsumer = crate::kafka::config(&b)
            .set("group.id", "cli-group")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["cli-lag"]).unwrap();
        consumer
    };
    let consumer = member();
    let mut consumed = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumed < 30 {
        assert!(Instant::now() < deadline, "consumed {consumed}");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            message.unwrap();
            consumed += 1;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let committed = crate::kafka::committed_offsets(&b, "cli-group", "cli-lag", 2);
    let active = json(&b, &["group", "describe", "cli-group"]);
    assert_eq!(active["state"], "Stable");
    assert_eq!(active["members"], 1);
    assert!(active["partitions"][0]["member_id"].is_string(), "{active}");
    let (code, line) = fails(&b, &["group", "seek", "cli-group", "-t", "cli-lag", "--to", "earliest"]);
    assert_eq!(code, 1, "a group with members refuses: {line}");
    drop(consumer);

    wait_until_empty(&b);
    let described = json(&b, &["group", "describe", "cli-group"]);
    // As kafka-consumer-groups.sh, an empty group shows the partitions it
    // committed, each with its lag.
    let lag: i64 = (0..2)
        .filter(|p| committed[*p as usize] >= 0)
        .map(|p| per_partition(p) - committed[p as usize])
        .sum();
    assert_eq!(described["total_lag"], lag, "{described}");
    assert_eq!(
        lag + 30,
        (0..2).filter(|p| committed[*p as usize] >= 0).map(per_partition).sum::<i64>()
    );
    for row in described["partitions"].as_array().unwrap() {
        let p = row["partition"].as_i64().unwrap() as i32;
        assert_eq!(row["log_end_offset"], per_partition(p));
        assert_eq!(row["committed_offset"], committed[p as usize]);
    }
    let listed = json(&b, &["group", "list"]);
    assert!(listed.as_array().unwrap().iter().any(|g| g["group"] == "cli-group"), "{listed}");

    let planned = json(
        &b,
        &[
            "group",
            "seek",
            "cli-group",
            "-t",
            "cli-lag",
            "--to",
            "offset:5",
            "-p",
            "0",
            "--dry-run",
        ],
    );
    assert_eq!(planned["partitions"][0]["new_offset"], 5);
    assert_eq!(
        crate::kafka::committed_offsets(&b, "cli-group", "cli-lag", 2),
        committed,
        "a dry run moves nothing"
    );
    ok(&b, &["group", "seek", "cli-group", "-t", "cli-lag", "--to", "earliest"]);
    assert_eq!(
        crate::kafka::committed_offsets(&b, "cli-group", "cli-lag", 2),
        vec![0, 0],
        "every partition of the topic"
    );

    // A restarted member starts where the seek put the group.
    let consumer = member();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        assert!(Instant::now() < deadline, "nothing consumed after the seek");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            break message.unwrap().offset();
        }
    };
    assert_eq!(first, 0);
    drop(consumer);
    wait_until_empty(&b);
    assert_eq!(json(&b, &["group", "delete", "cli-group"])["deleted"][0], "cli-group");
    // As in Kafka, a group that does not exist is described as Dead.
    let gone = json(&b, &["group", "describe", "cli-group"]);
    assert_eq!(
        (gone["state"].as_str(), gone["partitions"].as_array().map(Vec::len)),
        (Some("Dead"), Some(0)),
        "{gone}"
    );
}

/// Waits until the group has no member (a closed consumer leaves it).
fn wait_until_empty(brokers: &str) {
    crate::common::wait_until("the group is empty", 60, || {
        let out = sediment(brokers, &["group", "describe", "cli-group", "--format", "json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|g| g["members"] == 0)
    });
}

/// 100,000 lines with keys and a header, produced from a file and consumed
/// back as JSON: every line once, keyed lines where Kafka's partitioner
/// puts them (as librdkafka's murmur2 partitioner does), in order per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_a_file_and_consume_it_back_exactly() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};

    let broker = Broker::start("");
    let b = broker.bootstrap();
    ok(&b, &["topic", "create", "cli-lines", "-p", "4"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.txt");
    let lines: Vec<String> = (0..100_000).map(|i| format!("key-{}\tvalue {i} ünïcode", i % 1000)).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let summary = json(
        &b,
        &[
            "produce",
            "cli-lines",
            "-f",
            path.to_str().unwrap(),
            "-k",
            "\t",
            "-H",
            "origin=cli",
            "-z",
            "lz4",
        ],
    );
    assert_eq!(summary["records"], 100_000);

    let out = ok(&b, &["consume", "cli-lines", "--format", "json"]);
    let records: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), lines.len(), "every line once");
    let mut seen: Vec<String> = records
        .iter()
        .map(|r| format!("{}\t{}", r["key"].as_str().unwrap(), r["value"].as_str().unwrap()))
        .collect();
    seen.sort();
    let mut expected = lines.clone();
    expected.sort();
    assert!(seen == expected, "the same lines");
    assert!(records
        .iter()
        .all(|r| r["headers"][0]["key"] == "origin" && r["headers"][0]["value"] == "cli"));
    // Each key's values in the order produced, in one partition.
    let mut last: std::collections::HashMap<String, (i64, i64)> = Default::default();
    for r in &records {
        let value = r["value"].as_str().unwrap();
        let index: i64 = value.split(' ').nth(1).unwrap().parse().unwrap();
        let entry = last
            .entry(r["key"].as_str().unwrap().to_string())
            .or_insert((r["partition"].as_i64().unwrap(), -1));
        assert_eq!(entry.0, r["partition"].as_i64().unwrap(), "a key stays in one partition");
        assert!(index > entry.1, "in order");
        entry.1 = index;
    }
    // librdkafka's murmur2 partitioner agrees on where a key goes.
    let producer: ThreadedProducer<DefaultProducerContext> = crate::kafka::config(&b).set("partitioner", "murmur2").create().unwrap();
    for i in 0..20 {
        let key = format!("key-{i}");
        producer.send(BaseRecord::to("cli-lines").key(&key).payload("librdkafka")).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let tail = ok(&b, &["consume", "cli-lines", "--format", "json", "-s", "offset:0"]);
    for r in tail.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()) {
        if r["value"] == "librdkafka" {
            assert_eq!(last[r["key"].as_str().unwrap()].0, r["partition"].as_i64().unwrap(), "{r}");
        }
    }

    // Text formats, counts and starts.
    let kv = ok(&b, &["consume", "cli-lines", "-K", "-n", "3", "-p", "0"]);
    assert_eq!(kv.lines().count(), 3);
    assert!(kv.lines().all(|l| l.starts_with("key-") && l.contains("=value ")), "{kv}");
    let templated = ok(
        &b,
        &[
            "consume",
            "cli-lines",
            "-n",
            "1",
            "-p",
            "1",
            "-t",
            "{partition}/{offset}: {headers}",
        ],
    );
    assert_eq!(templated.trim_end(), "1/0: origin=cli");
    assert_eq!(ok(&b, &["consume", "cli-lines", "-s", "end"]), "", "nothing after the end");
    let (code, line) = fails(&b, &["consume", "cli-lines", "-t", "{nope}"]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("unknown field {nope}") && line.lines().count() == 1, "{line}");
    let (code, _) = fails(&b, &["consume", "cli-missing"]);
    assert_eq!(code, 1);
    let (code, _) = fails(&b, &["produce", "cli-lines", "-f", "/no/such/file"]);
    assert_eq!(code, 2);
}

/// `archive ls|inspect` read the archive a broker tiered to, with no broker.
#[test]
fn archive_subcommands_read_the_bucket_directly() {
    let broker =
        Broker::start("log_maintenance_interval_ms = 200\ntiering_interval_ms = 200\n[topic_defaults]\n\"segment.ms\" = \"500\"\n");
    let b = broker.bootstrap();
    ok(&b, &["topic", "create", "cli-arch", "-p", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("lines.txt");
    std::fs::write(&lines, (0..500).map(|i| format!("line {i}\n")).collect::<String>()).unwrap();
    ok(&b, &["produce", "cli-arch", "-f", lines.to_str().unwrap(), "-p", "0"]);
    // The next append after segment.ms rolls the segment, which is archived.
    std::thread::sleep(Duration::from_millis(700));
    ok(&b, &["produce", "cli-arch", "-f", lines.to_str().unwrap(), "-p", "0"]);
    let archive = format!("file://{}/archive", broker.data_dir.display());
    let mut inspected = serde_json::Value::Null;
    crate::common::wait_until("the first segment is archived", 30, || {
        inspected = json("", &["archive", "inspect", "cli-arch", "--archive", &archive]);
        inspected["partitions"][0]["records"].as_i64().unwrap_or(0) >= 500
    });
    let p0 = &inspected["partitions"][0];
    assert_eq!(p0["start_offset"], 0);
    assert_eq!(p0["records"], 500, "{inspected}");
    assert!(p0["bytes"].as_u64().unwrap() > 0 && p0["min_timestamp"].as_i64().unwrap() > 0);
    let with_objects = json("", &["archive", "inspect", "cli-arch", "-o", "--archive", &archive]);
    assert!(with_objects["partitions"][0]["object_list"][0]["key"]
        .as_str()
        .unwrap()
        .ends_with(".parquet"));
    let topics = json("", &["archive", "ls", "--archive", &archive]);
    assert!(topics.as_array().unwrap().iter().any(|t| t == "cli-arch"), "{topics}");
    assert!(ok("", &["archive", "inspect", "cli-arch", "--archive", &archive]).contains("PARTITION"));

    let (code, line) = fails("", &["archive", "inspect", "cli-none", "--archive", &archive]);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("UNKNOWN_TOPIC_OR_PARTITION") && line.contains("cli-none"), "{line}");
    let (code, line) = fails("", &["archive", "ls", "--archive", "no scheme here"]);
    assert_eq!(code, 2, "{line}");
}

/// `consume --group` reads as a member of the group: a second run resumes
/// where the first committed, a third prints nothing, and two members
/// share the partitions, each record printed once between them, before
/// Ctrl-C commits and leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_with_a_group_resumes_and_shares_partitions() {
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};

    // Heartbeats every 300 ms, so that partitions move quickly.
    let broker = Broker::start("group_consumer_heartbeat_interval_ms = 300");
    let b = broker.bootstrap();
    crate::kafka::create_topic(&b, "cli-resume", 2, &[]).await;
    let records: Vec<_> = (0..40).map(|i| crate::kafka::record(i, 10)).collect();
    crate::kafka::produce(&crate::kafka::producer(&b, &[]), "cli-resume", &records).await;
    let parse = |line: &str| -> (i64, i64) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        (record["partition"].as_i64().unwrap(), record["offset"].as_i64().unwrap())
    };
    let printed = |args: &[&str]| -> Vec<(i64, i64)> {
        let mut args = args.to_vec();
        args.extend(["--format", "json"]);
        ok(&b, &args).lines().map(parse).collect()
    };
    let first = printed(&["consume", "cli-resume", "--group", "resumer", "-n", "15"]);
    let rest = printed(&["consume", "cli-resume", "-g", "resumer"]);
    assert_eq!((first.len(), rest.len()), (15, 25), "{first:?} {rest:?}");
    let all: std::collections::BTreeSet<_> = first.iter().chain(&rest).collect();
    assert_eq!(all.len(), 40, "every record once over the two runs");
    let described = json(&b, &["group", "describe", "resumer"]);
    assert_eq!(
        (described["total_lag"].as_i64(), described["members"].as_i64()),
        (Some(0), Some(0)),
        "{described}"
    );
    assert!(printed(&["consume", "cli-resume", "-g", "resumer"]).is_empty());
    // Without the group, from the beginning as before.
    assert_eq!(printed(&["consume", "cli-resume"]).len(), 40);
    let (code, line) = fails(&b, &["consume", "cli-resume", "-g", "x", "-p", "0"]);
    assert_eq!(code, 2, "{line}");

    // Two members following one topic of 4 partitions.
    crate::kafka::create_topic(&b, "cli-shared", 4, &[]).await;
    let member = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sediment"))
            .args(["consume", "cli-shared", "-g", "sharers", "--follow", "--format", "json"])
            .env("SEDIMENT_BROKERS", &b)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(parse(&line));
            }
        });
        (child, lines)
    };
    let members = |n: i64| {
        crate::common::wait_until(&format!("{n} members"), 60, || {
            let out = sediment(&b, &["group", "describe", "sharers", "--format", "json"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|g| g["members"] == n)
        })
    };
    let (mut one, one_printed) = member();
    tokio::task::block_in_place(|| members(1));
    let (mut two, two_printed) = member();
    tokio::task::block_in_place(|| members(2));
    // Records go on coming until both members print some: by then the
    // first has handed partitions to the second.
    let producer = crate::kafka::producer(&b, &[]);
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while one_printed.lock().unwrap().is_empty() || two_printed.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the partitions were not shared");
        let batch: Vec<_> = (sent..sent + 20).map(|i| crate::kafka::record(i, 10)).collect();
        crate::kafka::produce(&producer, "cli-shared", &batch).await;
        sent += 20;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::task::block_in_place(|| {
        crate::common::wait_until("every record printed", 60, || {
            one_printed.lock().unwrap().len() + two_printed.lock().unwrap().len() >= sent
        })
    });
    let (a, b_side) = (one_printed.lock().unwrap().clone(), two_printed.lock().unwrap().clone());
    let union: std::collections::BTreeSet<_> = a.iter().chain(&b_side).collect();
    assert_eq!(
        (union.len(), a.len() + b_side.len()),
        (sent, sent),
        "each record once between the two"
    );
    // Ctrl-C: each commits what it printed and leaves.
    for child in [&mut one, &mut two] {
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}: {stderr}");
    }
    let described = json(&b, &["group", "describe", "sharers"]);
    assert_eq!(
        (described["total_lag"].as_i64(), described["members"].as_i64()),
        (Some(0), Some(0)),
        "{described}"
    );
}
