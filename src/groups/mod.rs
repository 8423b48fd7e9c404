//! Consumer groups: the classic join/sync protocol and committed offsets.
//! `state_machine` is pure (time is an argument); `coordinator` is its async
//! shell; `offsets` persists commits.
pub mod consumer;
pub mod coordinator;
pub mod expiry;
pub mod offsets;
pub mod state_machine;
