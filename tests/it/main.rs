//! Integration tests: the real `sediment` binary driven by real Kafka
//! clients (librdkafka through the rdkafka crate, kafka-python, kcat).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests may fail loudly and read the clock

mod admin;
mod archive;
mod bad_input;
mod cli;
mod clients;
mod cluster;
mod cluster_transactions;
mod common;
mod compaction;
mod consumer_groups;
mod crash;
mod delete_records;
mod etcd;
mod fetch_sessions;
mod group_admin;
mod groups;
mod groups_bounds;
mod hardening;
mod iceberg;
mod kafka;
mod partition;
mod quotas;
mod request_tracing;
mod s3;
mod security;
mod shutdown;
mod topic_configs;
mod topics_bounds;
mod transactions;
