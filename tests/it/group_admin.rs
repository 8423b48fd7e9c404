//! OffsetDelete with Kafka's rules, and ListGroups' type filter, through
//! kafka-python.

use crate::common::{run_python, Broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_delete_follows_kafkas_rules_and_list_groups_filters_by_type() {
    let broker = Broker::start("");
    let bootstrap = broker.bootstrap();
    let out = tokio::task::spawn_blocking(move || run_python("kafka_python_group_admin.py", &[&bootstrap]))
        .await
        .unwrap();
    assert!(out.contains("OK group admin"), "{out}");
}
