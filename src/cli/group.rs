//! `sediment group list|describe|delete|seek`: consumer groups, their
//! members, committed offsets and lag, as `kafka-consumer-groups.sh` shows
//! them. Group requests go to the group's coordinator (FindCoordinator);
//! ListGroups goes to every broker, since each lists the groups it
//! coordinates.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::client::{Client, Position, LATEST};
use super::output::table;
use super::{print, CliError, Globals};

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List the groups every broker coordinates.
    List,
    /// A group's state, members, committed offsets and lag.
    Describe { group: String },
    /// Delete groups (only groups without members).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a stopped group's committed offsets.
    Seek {
        group: String,
        /// The topic whose offsets move.
        #[arg(short, long)]
        topic: String,
        /// Only these partitions (default: every partition of the topic).
        #[arg(short, long, value_delimiter = ',')]
        partitions: Vec<i32>,
        /// earliest, latest, an offset (`offset:N`) or a time (`timestamp:MS`,
        /// milliseconds since the epoch).
        #[arg(long)]
        to: String,
        /// Print the new offsets and commit nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// One partition's row in `group describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRow {
    pub topic: String,
    pub partition: i32,
    /// -1: nothing committed.
    pub committed: i64,
    /// -1: unknown.
    pub log_end: i64,
    pub member: Option<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
}

impl OffsetRow {
    /// How far the group is behind; `None` when either end is unknown.
    pub fn lag(&self) -> Option<i64> {
        (self.committed >= 0 && self.log_end >= 0).then(|| (self.log_end - self.committed).max(0))
    }
}

fn group_id(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

pub async fn run(globals: &Globals, command: GroupCommand) -> Result<(), CliError> {
    let mut client = Client::connect(globals).await?;
    match command {
        GroupCommand::List => {
            let metadata = client.metadata(Some(Vec::new())).await?;
            let mut groups: BTreeMap<String, (String, String, String)> = BTreeMap::new();
            for broker in metadata.brokers.iter().map(|b| b.node_id.0) {
                let response: ListGroupsResponse = client
                    .call(Some(broker), ApiKey::ListGroups, 4, &ListGroupsRequest::default())
                    .await?;
                if response.error_code != 0 {
                    return Err(CliError::kafka(
                        response.error_code,
                        format!("broker {broker} cannot list its groups"),
                    ));
                }
                for g in response.groups {
                    groups.insert(
                        g.group_id.0.to_string(),
                        (g.group_state.to_string(), g.protocol_type.to_string(), broker.to_string()),
                    );
                }
            }
            print(
                globals.format,
                || {
                    let rows: Vec<Vec<String>> = groups
                        .iter()
                        .map(|(id, (state, kind, coordinator))| vec![id.clone(), state.clone(), kind.clone(), coordinator.clone()])
                        .collect();
                    table(&["GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR"], &rows)
                },
                || {
                    json!(groups
                        .iter()
                        .map(|(id, (state, kind, coordinator))| json!({"group": id, "state": state, "protocol_type": kind, "coordinator": coordinator.parse::<i32>().unwrap_or(-1)}))
                        .collect::<Vec<_>>())
                },
            );
        }
        GroupCommand::Describe { group } => {
            let coordinator = client.group_coordinator(&group).await?;
            // A KIP-848 group is described by ConsumerGroupDescribe, a
            // classic one by DescribeGroups, as Kafka's tools do.
            let (state, members, owners) = match describe_consumer_group(&mut client, coordinator, &group).await? {
                Some(described) => described,
                None => describe_classic_group(&mut client, coordinator, &group).await?,
            };
            let committed = committed_offsets(&mut client, coordinator, &group).await?;
            let mut keys: Vec<(String, i32)> = committed.keys().cloned().chain(owners.keys().cloned()).collect();
            keys.sort();
            keys.dedup();
            let ends = client.list_offsets(&keys, LATEST).await?;
            let rows: Vec<OffsetRow> = keys
                .into_iter()
                .map(|key| OffsetRow {
                    committed: committed.get(&key).copied().unwrap_or(-1),
                    log_end: ends.get(&key).copied().unwrap_or(-1),
                    member: owners.get(&key).cloned(),
                    topic: key.0,
                    partition: key.1,
                })
                .collect();
            print(
                globals.format,
                || describe_text(&group, &state, members, &rows),
                || {
                    json!({
                        "group": group,
                        "state": state,
                        "members": members,
                        "coordinator": coordinator,
                        "partitions": rows.iter().map(|r| json!({
                            "topic": r.topic,
                            "partition": r.partition,
                            "committed_offset": r.committed,
                            "log_end_offset": r.log_end,
                            "lag": r.lag(),
                            "member_id": r.member.as_ref().map(|m| m.member_id.clone()),
                            "client_id": r.member.as_ref().map(|m| m.client_id.clone()),
                            "host": r.member.as_ref().map(|m| m.host.clone()),
                        })).collect::<Vec<_>>(),
                        "total_lag": rows.iter().filter_map(OffsetRow::lag).sum::<i64>(),
                    })
                },
            );
        }
        GroupCommand::Delete { groups } => {
            let mut deleted = Vec::new();
            for group in &groups {
                let coordinator = client.group_coordinator(group).await?;
                let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
                let response: DeleteGroupsResponse = client.call(Some(coordinator), ApiKey::DeleteGroups, 2, &request).await?;
                if let Some(result) = response.results.iter().find(|r| r.error_code != 0) {
                    print(
                        globals.format,
                        || deleted.iter().map(|g| format!("deleted group {g}\n")).collect(),
                        || json!({"deleted": deleted}),
                    );
                    return Err(CliError::kafka(result.error_code, format!("cannot delete group {group}")));
                }
                deleted.push(group.clone());
            }
            print(
                globals.format,
                || deleted.iter().map(|g| format!("deleted group {g}\n")).collect(),
                || json!({"deleted": deleted}),
            );
        }
        GroupCommand::Seek {
            group,
            topic,
            partitions,
            to,
            dry_run,
        } => {
            let target = Position::parse("--to", &to, "earliest", "latest")?;
            seek(&mut client, globals, &group, &topic, partitions, target, dry_run).await?;
        }
    }
    Ok(())
}

/// A group's state, its member count and who owns each partition.
type Described = (String, usize, BTreeMap<(String, i32), Member>);

/// A KIP-848 group (ConsumerGroupDescribe v0); `None` when the group is
/// not one (or the broker has no such API).
async fn describe_consumer_group(client: &mut Client, coordinator: i32, group: &str) -> Result<Option<Described>, CliError> {
    if !client.offers_api(ApiKey::ConsumerGroupDescribe) {
        return Ok(None);
    }
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]);
    let described: ConsumerGroupDescribeResponse = client.call(Some(coordinator), ApiKey::ConsumerGroupDescribe, 0, &request).await?;
    let Some(info) = described.groups.first() else {
        return Ok(None);
    };
    if info.error_code == kafka_protocol::ResponseError::GroupAuthorizationFailed.code() {
        return Err(CliError::kafka(info.error_code, format!("cannot describe group {group}")));
    }
    if info.error_code != 0 {
        return Ok(None);
    }
    let mut owners = BTreeMap::new();
    for m in &info.members {
        let member = Member {
            member_id: m.member_id.to_string(),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
        };
        for tp in &m.assignment.topic_partitions {
            for p in &tp.partitions {
                owners.insert((tp.topic_name.0.to_string(), *p), member.clone());
            }
        }
    }
    Ok(Some((info.group_state.to_string(), info.members.len(), owners)))
}

/// A classic group (DescribeGroups v5): its members' assignments decoded.
async fn describe_classic_group(client: &mut Client, coordinator: i32, group: &str) -> Result<Described, CliError> {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let described: DescribeGroupsResponse = client.call(Some(coordinator), ApiKey::DescribeGroups, 5, &request).await?;
    let Some(info) = described.groups.first() else {
        return Err(CliError::Invalid("the broker described no group".to_string()));
    };
    if info.error_code != 0 {
        return Err(CliError::kafka(info.error_code, format!("cannot describe group {group}")));
    }
    let mut owners = BTreeMap::new();
    for m in &info.members {
        let member = Member {
            member_id: m.member_id.to_string(),
            client_id: m.client_id.to_string(),
            host: m.client_host.to_string(),
        };
        let assigned = crate::groups::consumer::embedded::decode_assignment(&m.member_assignment).unwrap_or_default();
        for (topic, partitions) in assigned {
            for p in partitions {
                owners.insert((topic.clone(), p), member.clone());
            }
        }
    }
    Ok((info.group_state.to_string(), info.members.len(), owners))
}

/// Every committed offset of the group (OffsetFetch v7, all topics).
pub(crate) async fn committed_offsets(
    client: &mut Client,
    coordinator: i32,
    group: &str,
) -> Result<BTreeMap<(String, i32), i64>, CliError> {
    let request = OffsetFetchRequest::default().with_group_id(group_id(group)).with_topics(None);
    let response: OffsetFetchResponse = client.call(Some(coordinator), ApiKey::OffsetFetch, 7, &request).await?;
    if response.error_code != 0 {
        return Err(CliError::kafka(
            response.error_code,
            format!("cannot read the offsets of group {group}"),
        ));
    }
    let mut committed = BTreeMap::new();
    for topic in &response.topics {
        for p in topic.partitions.iter().filter(|p| p.error_code == 0 && p.committed_offset >= 0) {
            committed.insert((topic.name.0.to_string(), p.partition_index), p.committed_offset);
        }
    }
    Ok(committed)
}

fn describe_text(group: &str, state: &str, members: usize, rows: &[OffsetRow]) -> String {
    let total: i64 = rows.iter().filter_map(OffsetRow::lag).sum();
    let mut out = format!("group {group}  state {state}  members {members}  total lag {total}\n");
    let dash = || "-".to_string();
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let number = |n: i64| if n >= 0 { n.to_string() } else { dash() };
            vec![
                r.topic.clone(),
                r.partition.to_string(),
                number(r.committed),
                number(r.log_end),
                r.lag().map_or_else(dash, |l| l.to_string()),
                r.member.as_ref().map_or_else(dash, |m| m.member_id.clone()),
                r.member.as_ref().map_or_else(dash, |m| m.host.clone()),
                r.member.as_ref().map_or_else(dash, |m| m.client_id.clone()),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &table_rows,
    ));
    out
}

/// Commits new offsets for a group without members, as an admin tool does
/// (generation -1, no member id): the coordinator refuses it while the
/// group has members.
/// Commits offsets: as a member of the group (its id and epoch, OffsetCommit
/// v9), or with no member for a group that has none (generation -1, v8),
/// which Kafka refuses while the group has members.
pub(crate) async fn commit_offsets(
    client: &mut Client,
    coordinator: i32,
    group: &str,
    topic: &str,
    offsets: &[(i32, i64)],
    member: Option<(&str, i32)>,
) -> Result<(), CliError> {
    let (member_id, epoch) = member.unwrap_or(("", -1));
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(epoch)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, offset)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*offset)
                            .with_committed_leader_epoch(-1)
                    })
                    .collect(),
            )]);
    let response: OffsetCommitResponse = match member {
        Some(_) => client.call(Some(coordinator), ApiKey::OffsetCommit, 9, &request).await?,
        None => client.call(Some(coordinator), ApiKey::OffsetCommit, 8, &request).await?,
    };
    if let Some(p) = response.topics.iter().flat_map(|t| &t.partitions).find(|p| p.error_code != 0) {
        let why = if member.is_none() && p.error_code == kafka_protocol::ResponseError::UnknownMemberId.code() {
            format!("cannot commit the offsets of group {group}: it has members; stop its consumers first")
        } else {
            format!("cannot commit the offsets of group {group}")
        };
        return Err(CliError::kafka(p.error_code, why));
    }
    Ok(())
}

async fn seek(
    client: &mut Client,
    globals: &Globals,
    group: &str,
    topic: &str,
    partitions: Vec<i32>,
    target: Position,
    dry_run: bool,
) -> Result<(), CliError> {
    let all = client.partitions_of(topic).await?;
    let chosen: Vec<i32> = if partitions.is_empty() { all.clone() } else { partitions };
    if let Some(missing) = chosen.iter().find(|p| !all.contains(p)) {
        return Err(CliError::Invalid(format!("topic {topic} has no partition {missing}")));
    }
    let keys: Vec<(String, i32)> = chosen.iter().map(|p| (topic.to_string(), *p)).collect();
    let coordinator = client.group_coordinator(group).await?;
    let before = committed_offsets(client, coordinator, group).await?;
    let located = client.locate(&keys, target).await?;
    let mut plan = Vec::new();
    for key in &keys {
        let located = located.get(key).copied().unwrap_or_default();
        let (Some(start), Some(end)) = (located.start, located.end) else {
            return Err(CliError::Unreachable(format!("no offsets for {}-{} from its leader", key.0, key.1)));
        };
        let new = match target {
            // Kafka's rule: an offset out of range is clamped to it.
            Position::Offset(n) => n.clamp(start, end),
            other => other.resolve(start, end, located.at_time),
        };
        plan.push((key.1, before.get(key).copied().unwrap_or(-1), new));
    }
    if !dry_run {
        let offsets: Vec<(i32, i64)> = plan.iter().map(|(p, _, new)| (*p, *new)).collect();
        commit_offsets(client, coordinator, group, topic, &offsets, None).await?;
    }
    print(
        globals.format,
        || {
            let rows: Vec<Vec<String>> = plan
                .iter()
                .map(|(p, old, new)| vec![topic.to_string(), p.to_string(), old.to_string(), new.to_string()])
                .collect();
            let verb = if dry_run { "would move (dry run)" } else { "moved" };
            format!(
                "{verb}: group {group}\n{}",
                table(&["TOPIC", "PARTITION", "OLD-OFFSET", "NEW-OFFSET"], &rows)
            )
        },
        || {
            json!({
                "group": group,
                "topic": topic,
                "dry_run": dry_run,
                "partitions": plan.iter().map(|(p, old, new)| json!({"partition": p, "old_offset": old, "new_offset": new})).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seek_targets_parse_and_lag_needs_both_ends() {
        let parse = |s| Position::parse("--to", s, "earliest", "latest");
        assert_eq!(parse("earliest"), Ok(Position::Start));
        assert_eq!(parse("latest"), Ok(Position::End));
        assert_eq!(parse("offset:42"), Ok(Position::Offset(42)));
        assert_eq!(parse("timestamp:1700000000000"), Ok(Position::Timestamp(1_700_000_000_000)));
        for bad in ["", "first", "offset:", "offset:-1", "offset:x", "timestamp:soon", "latest:1", "end"] {
            assert!(matches!(parse(bad), Err(CliError::Invalid(_))), "{bad}");
        }
        let row = |committed, log_end| OffsetRow {
            topic: "t".into(),
            partition: 0,
            committed,
            log_end,
            member: None,
        };
        assert_eq!(row(10, 25).lag(), Some(15));
        assert_eq!(row(-1, 25).lag(), None);
        assert_eq!(
            row(30, 25).lag(),
            Some(0),
            "a commit past the end (the log was truncated) is no lag"
        );
        let text = describe_text("g", "Empty", 0, &[row(10, 25), row(-1, 3)]);
        assert!(text.starts_with("group g  state Empty  members 0  total lag 15\n"), "{text}");
        assert!(text.contains("t      0          10              25              15"), "{text}");
    }
}
