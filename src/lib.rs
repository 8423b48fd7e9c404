//! Sediment: a Kafka-compatible broker on a durable local log, whose history
//! is meant to live in object storage as Parquet.
//!
//! Module map (docs/ARCHITECTURE.md tells the whole story):
//! - [`server`]: TCP listener and connections; frames in, frames out.
//! - [`protocol`]: the Kafka edge on the `kafka-protocol` codec; one handler per API.
//! - [`broker`]: topics, partitions, group commit, maintenance; no sockets, no frames.
//! - [`log`]: the partition log on disk: segments, indexes, recovery.
//! - [`groups`]: consumer groups (pure state machine + async shell) and committed offsets.
//! - [`cluster`]: a broker in a cluster: session, image, roles, followers' fetchers.
//! - [`controller`]: the cluster controller's pure decisions (placement, leaders and ISRs).
//! - [`replication`]: the leader's replication bookkeeping (HW rule, ISR changes); pure so far.
//! - [`coordination`]: the seam to cluster metadata (embedded file now, etcd later).
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`, `/v1/...`.
//! - [`tiering`]: the uploader, from the local log to the archive; above `broker` and `archive`.
//! - [`cleaner`]: the log cleaner task of compacted topics; above `broker` and `log`.
//! - [`tasks`]: background tasks and connections, owned by the composition root ([`node`]).
//! - [`memory`]: the broker-wide budget of bytes held by responses.
//! - [`config`], [`topic_config`], [`metrics`], [`clock`].

pub mod archive;
pub mod broker;
pub mod cleaner;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod coordination;
pub mod fetch_session;
pub mod groups;
pub mod http;
pub mod iceberg;
pub mod kafka_client;
pub mod line_file;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod quota;
pub mod replication;
pub mod security;
mod seeded;
pub mod server;
pub mod tasks;
pub mod telemetry;
pub mod tiering;
pub mod topic_config;
pub mod txn;
