//! Any bytes as a schedule of KIP-848 group operations: heartbeats of the
//! new protocol (joins, steady beats with what the member last got, leaves,
//! static leaves) and of classic members inside the group (JoinGroup with
//! the fuzz bytes as embedded metadata, SyncGroup, Heartbeat, LeaveGroup),
//! with time moving on. The group never panics and keeps its invariants
//! (`ConsumerGroup::check_invariants`: no partition held by two members);
//! the embedded-protocol decoders take any bytes.
#![no_main]
use std::collections::BTreeMap;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sediment::groups::consumer::embedded;
use sediment::groups::consumer::group::{ConsumerGroup, HeartbeatInput, Timing, TopicCatalog};
use sediment::groups::consumer::Assignment;
use sediment::groups::state_machine::JoinInput;
use uuid::Uuid;

struct Topics;

impl TopicCatalog for Topics {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        match name {
            "a" => Some((Uuid::from_bytes([1; 16]), 3)),
            "b" => Some((Uuid::from_bytes([2; 16]), 5)),
            _ => None,
        }
    }
    fn names(&self) -> Vec<String> {
        vec!["a".into(), "b".into()]
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = embedded::decode_subscription(&Bytes::copy_from_slice(data));
    let _ = embedded::decode_assignment(&Bytes::copy_from_slice(data));
    let timing = Timing {
        session_timeout_ms: 500,
        heartbeat_interval_ms: 100,
        max_size: 4,
    };
    let mut group = ConsumerGroup::new("g".into());
    // What each simulated member was last told: (epoch, partitions).
    let mut seen: BTreeMap<String, (i32, Assignment)> = BTreeMap::new();
    let mut now = 0i64;
    for chunk in data.chunks(3) {
        let (op, who, arg) = (chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0));
        let id = format!("m{}", who % 5);
        now += i64::from(arg % 64) * 10;
        let (epoch, owned) = seen.get(&id).cloned().unwrap_or((0, Assignment::new()));
        match op % 8 {
            0 => {
                let topics = if arg % 2 == 0 { vec!["a".into()] } else { vec!["a".into(), "b".into(), "c".into()] };
                let input = HeartbeatInput {
                    api_version: 1,
                    member_id: id.clone(),
                    member_epoch: 0,
                    instance_id: (arg % 3 == 0).then(|| format!("i{}", who % 2)),
                    rebalance_timeout_ms: 300,
                    subscribed_topic_names: Some(topics),
                    subscribed_topic_regex: (arg % 5 == 0).then(|| "b|z.*".into()),
                    server_assignor: Some(if arg % 7 == 0 { "range" } else { "uniform" }.into()),
                    owned: Some(Assignment::new()),
                    ..Default::default()
                };
                if let Ok(out) = group.heartbeat(now, input, &Topics, timing) {
                    seen.insert(out.member_id, (out.member_epoch, out.assignment.unwrap_or_default()));
                }
            }
            1 | 2 => {
                let input = HeartbeatInput {
                    api_version: 1,
                    member_id: id.clone(),
                    member_epoch: if op % 8 == 2 && arg % 4 == 0 { -1 - i32::from(arg % 2) } else { epoch },
                    instance_id: (arg % 3 == 0).then(|| format!("i{}", who % 2)),
                    rebalance_timeout_ms: -1,
                    owned: (arg % 6 != 0).then_some(owned.clone()),
                    ..Default::default()
                };
                match group.heartbeat(now, input, &Topics, timing) {
                    Ok(out) if out.member_epoch >= 0 => {
                        let next = out.assignment.unwrap_or(owned);
                        seen.insert(id, (out.member_epoch, next));
                    }
                    _ => {
                        seen.remove(&id);
                    }
                }
            }
            3 => {
                let join = JoinInput {
                    member_id: if arg % 2 == 0 { String::new() } else { id.clone() },
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "h".into(),
                    session_timeout_ms: 500,
                    rebalance_timeout_ms: 300,
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), Bytes::copy_from_slice(data))],
                    require_known_member_id: arg % 3 == 0,
                };
                let _ = group.classic_join(now, join, id.clone(), &Topics, timing);
            }
            4 => {
                let _ = group.classic_sync(now, &id, None, epoch, None);
            }
            5 => {
                let _ = group.classic_heartbeat(now, &id, None, epoch);
            }
            6 => {
                let _ = group.classic_leave(&[(id.clone(), None)]);
                seen.remove(&id);
            }
            _ => {
                for gone in group.tick(now) {
                    seen.remove(&gone);
                }
            }
        }
        if let Err(broken) = group.check_invariants() {
            panic!("{broken}");
        }
        let _ = group.describe();
        let _ = group.subscribed_topics();
    }
});
