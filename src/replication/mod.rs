//! Replication between brokers, by Kafka's ISR protocol over its own Fetch
//! API. What exists so far is the leader's pure bookkeeping (`state`): the
//! high-watermark rule and ISR changes, property tested. The replica
//! manager, the follower fetcher and the inter-broker client come next
//! (docs/ARCHITECTURE.md, "Cluster: what exists").

pub mod state;
