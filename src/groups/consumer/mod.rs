//! KIP-848 consumer groups (`group.protocol=consumer`): the coordinator
//! assigns partitions itself and members move to their targets one
//! heartbeat at a time. `group` is the pure state machine, `assignor` the
//! server-side assignors, `reconcile` one member's next step. The async
//! shell is `groups::coordinator`, shared with classic groups.

use std::collections::{BTreeMap, BTreeSet};

pub mod assignor;
pub mod embedded;
pub mod group;
pub mod reconcile;

/// Partitions by topic id.
pub type Assignment = BTreeMap<uuid::Uuid, BTreeSet<i32>>;
