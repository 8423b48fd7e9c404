//! The cluster controller's pure decisions: where new replicas go
//! (`placement`) and who leads and who is in sync as brokers come and go
//! (`decide`). The task that holds the controller key in etcd and applies
//! these through fenced transactions comes next; these rules are tested on
//! their own first, without processes (docs/ARCHITECTURE.md, "Cluster: what
//! exists").

pub mod decide;
pub mod placement;
