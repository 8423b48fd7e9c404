//! The command line's Kafka client: bootstraps from `--brokers`, learns
//! the brokers and the controller from Metadata, and sends each request to
//! the broker that must answer it, over one connection per broker. Every
//! connect and every request is bounded by `--timeout-ms`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FindCoordinatorResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use super::{CliError, Globals};
use crate::kafka_client::{AuthenticationRefused, ClientSecurity, Connection};
use crate::security::runtime::SystemEntropy;

/// The largest answer read (a Metadata of many topics, a big describe).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// Metadata v12: topic ids, and no deprecated fields (Kafka 2.8+).
const METADATA_VERSION: i16 = 12;

/// ApiVersions v3 (Kafka 2.4+): the versions a broker offers.
const API_VERSIONS_VERSION: i16 = 3;

pub struct Client {
    timeout: Duration,
    /// TLS and SASL for every connection.
    security: ClientSecurity,
    /// API key → the versions the bootstrap broker offers (ApiVersions).
    offered: BTreeMap<i16, (i16, i16)>,
    /// Broker id → address, from the last Metadata.
    brokers: BTreeMap<i32, String>,
    controller: Option<i32>,
    /// Address → open connection.
    connections: BTreeMap<String, Connection>,
    /// Connections with a `call` under way. One left here by a call whose
    /// future was dropped (Ctrl-C) may hold an unread answer: it is not
    /// reused.
    in_call: BTreeSet<String>,
    /// The address the bootstrap connection reached.
    bootstrap: String,
}

impl Client {
    /// Connects to the first answering address of `--brokers`, with the
    /// TLS and SASL settings of `globals`, and reads the cluster's brokers
    /// and controller.
    pub async fn connect(globals: &Globals) -> Result<Self, CliError> {
        let security = globals.security(Arc::new(SystemEntropy))?;
        let timeout = globals.timeout();
        let addresses: Vec<&str> = globals.brokers.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
        if addresses.is_empty() {
            return Err(CliError::Invalid("--brokers names no address".to_string()));
        }
        let mut last_error = String::new();
        for address in &addresses {
            if !address.contains(':') {
                return Err(CliError::Invalid(format!("--brokers: {address} is not HOST:PORT")));
            }
            match Connection::connect(address, client_id(), timeout, MAX_RESPONSE_BYTES, &security).await {
                Ok(mut connection) => {
                    let versions: ApiVersionsResponse = connection
                        .call(ApiKey::ApiVersions, API_VERSIONS_VERSION, &ApiVersionsRequest::default(), timeout)
                        .await
                        .map_err(|e| CliError::Unreachable(format!("{address} did not answer ApiVersions: {e:#}")))?;
                    if versions.error_code != 0 {
                        return Err(CliError::kafka(versions.error_code, format!("{address} refused ApiVersions")));
                    }
                    let mut client = Self {
                        timeout,
                        security,
                        offered: versions
                            .api_keys
                            .iter()
                            .map(|v| (v.api_key, (v.min_version, v.max_version)))
                            .collect(),
                        brokers: BTreeMap::new(),
                        controller: None,
                        connections: BTreeMap::from([(address.to_string(), connection)]),
                        in_call: BTreeSet::new(),
                        bootstrap: address.to_string(),
                    };
                    client.metadata(Some(Vec::new())).await?;
                    return Ok(client);
                }
                Err(e) => {
                    // A refused login is the broker's answer, not an
                    // unreachable broker.
                    if let Some(refused) = refused_login(&e, address) {
                        return Err(refused);
                    }
                    last_error = format!("{address}: {e:#}");
                }
            }
        }
        Err(CliError::Unreachable(format!(
            "cannot reach any broker of {} ({last_error})",
            globals.brokers
        )))
    }

    /// Metadata for `topics` (`None`: every topic), never creating one. It
    /// also refreshes the brokers and the controller.
    pub async fn metadata(&mut self, topics: Option<Vec<String>>) -> Result<MetadataResponse, CliError> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .into_iter()
                    .map(|name| {
                        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(kafka_protocol::messages::TopicName(StrBytes::from_string(name))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let response: MetadataResponse = self.call(None, ApiKey::Metadata, METADATA_VERSION, &request).await?;
        self.brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        self.controller = (response.controller_id.0 >= 0).then_some(response.controller_id.0);
        Ok(response)
    }

    /// The controller, where topic changes go (as Kafka's admin client
    /// sends them); `None` while the cluster has none.
    /// Whether the bootstrap broker offers `api` at any version.
    pub fn offers_api(&self, api: ApiKey) -> bool {
        self.offered.contains_key(&(api as i16))
    }

    pub fn controller(&self) -> Option<i32> {
        self.controller
    }

    /// The address of broker `node` (`None`: the bootstrap broker), with a
    /// connection open to it.
    async fn connected(&mut self, node: Option<i32>) -> Result<String, CliError> {
        let address = match node {
            None => self.bootstrap.clone(),
            Some(id) => self
                .brokers
                .get(&id)
                .cloned()
                .ok_or_else(|| CliError::Unreachable(format!("broker {id} is not in the cluster's metadata")))?,
        };
        if self.in_call.remove(&address) {
            self.connections.remove(&address);
        }
        if !self.connections.contains_key(&address) {
            let connection = Connection::connect(&address, client_id(), self.timeout, MAX_RESPONSE_BYTES, &self.security)
                .await
                .map_err(|e| {
                    refused_login(&e, &address).unwrap_or_else(|| CliError::Unreachable(format!("cannot reach {address}: {e:#}")))
                })?;
            self.connections.insert(address.clone(), connection);
        }
        Ok(address)
    }

    /// Sends one request to broker `node` (`None`: the bootstrap broker)
    /// and reads its answer, within the timeout.
    pub async fn call<Req, Resp>(&mut self, node: Option<i32>, api: ApiKey, version: i16, request: &Req) -> Result<Resp, CliError>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        offers(&self.offered, api, version)?;
        let address = self.connected(node).await?;
        let Some(connection) = self.connections.get_mut(&address) else {
            return Err(CliError::Unreachable(format!("no connection to {address}")));
        };
        self.in_call.insert(address.clone());
        let answered = connection.call(api, version, request, self.timeout).await;
        self.in_call.remove(&address);
        match answered {
            Ok(response) => Ok(response),
            Err(e) => {
                // The stream may be mid-frame: never reuse it.
                self.connections.remove(&address);
                Err(CliError::Unreachable(format!("{address} did not answer {api:?}: {e}")))
            }
        }
    }

    /// Sends a request that gets no answer (Produce with acks=0).
    pub async fn send<Req: Encodable + HeaderVersion>(
        &mut self,
        node: Option<i32>,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<(), CliError> {
        self.write(node, api, version, request).await.map(|_| ())
    }

    /// Writes a request to broker `node` without waiting: its answer is
    /// read with `read`, in the order requests were written to that broker.
    pub async fn write<Req: Encodable + HeaderVersion>(
        &mut self,
        node: Option<i32>,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<InFlight, CliError> {
        offers(&self.offered, api, version)?;
        let address = self.connected(node).await?;
        let Some(connection) = self.connections.get_mut(&address) else {
            return Err(CliError::Unreachable(format!("no connection to {address}")));
        };
        match connection.write_request(api, version, request, self.timeout).await {
            Ok(correlation_id) => Ok(InFlight {
                address,
                correlation_id,
                version,
            }),
            Err(e) => {
                self.connections.remove(&address);
                Err(CliError::Unreachable(format!("cannot send {api:?} to {address}: {e}")))
            }
        }
    }

    /// Reads the answer to a request `write` sent.
    pub async fn read<Resp: Decodable + HeaderVersion>(&mut self, in_flight: &InFlight) -> Result<Resp, CliError> {
        let Some(connection) = self.connections.get_mut(&in_flight.address) else {
            return Err(CliError::Unreachable(format!("the connection to {} closed", in_flight.address)));
        };
        match connection
            .read_response(in_flight.version, in_flight.correlation_id, self.timeout)
            .await
        {
            Ok(response) => Ok(response),
            Err(e) => {
                self.connections.remove(&in_flight.address);
                Err(CliError::Unreachable(format!("{} did not answer: {e}", in_flight.address)))
            }
        }
    }
}

/// A request written and not answered yet.
pub struct InFlight {
    address: String,
    correlation_id: i32,
    version: i16,
}

/// ListOffsets' special timestamps.
pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;

/// A place in each partition, as `consume --from` and `group seek --to`
/// name it: the log's start, its end, an offset, or the first offset at or
/// after a time (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Start,
    End,
    Offset(i64),
    Timestamp(i64),
}

impl Position {
    /// Parses `s`, given to `flag`, whose words for the start and the end
    /// are `start` and `end` (`beginning`/`end`, `earliest`/`latest`).
    pub fn parse(flag: &str, s: &str, start: &str, end: &str) -> Result<Self, CliError> {
        let bad = || CliError::Invalid(format!("{flag} {s}: give {start}, {end}, offset:N or timestamp:MS"));
        let non_negative = |n: &str| n.parse().ok().filter(|n: &i64| *n >= 0);
        match s.split_once(':') {
            None if s == start => Ok(Position::Start),
            None if s == end => Ok(Position::End),
            Some(("offset", n)) => non_negative(n).map(Position::Offset).ok_or_else(bad),
            Some(("timestamp", ms)) => non_negative(ms).map(Position::Timestamp).ok_or_else(bad),
            _ => Err(bad()),
        }
    }

    /// Where this position is in a partition whose log runs from `start`
    /// to `end`; `at_time` is its leader's answer for a timestamp. No
    /// record at or after the time: the end.
    pub fn resolve(self, start: i64, end: i64, at_time: Option<i64>) -> i64 {
        match self {
            Position::Start => start,
            Position::End => end,
            Position::Offset(n) => n,
            Position::Timestamp(_) => at_time.unwrap_or(end),
        }
    }
}

/// A partition's log start and end, and the offset its leader gave for a
/// `Position::Timestamp`; `None` where the leader did not say.
#[derive(Debug, Clone, Copy, Default)]
pub struct Located {
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub at_time: Option<i64>,
}

impl Client {
    /// The broker that coordinates `group` (FindCoordinator v4, key type 0).
    pub async fn group_coordinator(&mut self, group: &str) -> Result<i32, CliError> {
        let request = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
        let response: FindCoordinatorResponse = self.call(None, ApiKey::FindCoordinator, 4, &request).await?;
        let found = response
            .coordinators
            .first()
            .ok_or_else(|| CliError::Invalid("the broker answered for no group".to_string()))?;
        if found.error_code != 0 {
            return Err(CliError::kafka(
                found.error_code,
                format!("cannot find the coordinator of group {group}"),
            ));
        }
        self.brokers.insert(found.node_id.0, format!("{}:{}", found.host, found.port));
        Ok(found.node_id.0)
    }

    /// The partition indexes of an existing topic, in order; a missing one
    /// is Kafka's error (UNKNOWN_TOPIC_OR_PARTITION).
    pub async fn partitions_of(&mut self, topic: &str) -> Result<Vec<i32>, CliError> {
        Ok(self.leaders(topic).await?.into_keys().collect())
    }

    /// Each partition of an existing topic with its leader (-1: none now);
    /// a missing topic is Kafka's error (UNKNOWN_TOPIC_OR_PARTITION).
    pub async fn leaders(&mut self, topic: &str) -> Result<BTreeMap<i32, i32>, CliError> {
        let metadata = self.metadata(Some(vec![topic.to_string()])).await?;
        let found = metadata
            .topics
            .first()
            .ok_or_else(|| CliError::Invalid("the broker answered for no topic".to_string()))?;
        if found.error_code != 0 {
            return Err(CliError::kafka(found.error_code, format!("topic {topic}")));
        }
        Ok(found.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect())
    }

    /// The log start and end of each partition, and for a timestamp
    /// position the first offset at or after it, from the leaders.
    pub async fn locate(&mut self, partitions: &[(String, i32)], position: Position) -> Result<BTreeMap<(String, i32), Located>, CliError> {
        let starts = self.list_offsets(partitions, EARLIEST).await?;
        let ends = self.list_offsets(partitions, LATEST).await?;
        let at_time = match position {
            Position::Timestamp(ms) => self.list_offsets(partitions, ms).await?,
            _ => BTreeMap::new(),
        };
        Ok(partitions
            .iter()
            .map(|key| {
                let located = Located {
                    start: starts.get(key).copied(),
                    end: ends.get(key).copied(),
                    at_time: at_time.get(key).copied(),
                };
                (key.clone(), located)
            })
            .collect())
    }

    /// The offsets for `timestamp` (EARLIEST, LATEST, or a time in ms) of
    /// each partition, asked of its leader: one request per leader. A
    /// partition whose leader is unknown, unreachable or refuses is left
    /// out; so is one with no record at or after a timestamp.
    pub async fn list_offsets(&mut self, partitions: &[(String, i32)], timestamp: i64) -> Result<BTreeMap<(String, i32), i64>, CliError> {
        let topics: Vec<String> = partitions
            .iter()
            .map(|(t, _)| t.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let metadata = self.metadata(Some(topics)).await?;
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        for topic in &metadata.topics {
            let name = topic.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            for p in topic.partitions.iter().filter(|p| p.leader_id.0 >= 0) {
                if partitions.iter().any(|(t, i)| *t == name && *i == p.partition_index) {
                    by_leader
                        .entry(p.leader_id.0)
                        .or_default()
                        .entry(name.clone())
                        .or_default()
                        .push(p.partition_index);
                }
            }
        }
        let mut offsets = BTreeMap::new();
        for (leader, topics) in by_leader {
            let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(
                topics
                    .into_iter()
                    .map(|(name, indexes)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name)))
                            .with_partitions(
                                indexes
                                    .into_iter()
                                    .map(|i| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(i)
                                            .with_current_leader_epoch(-1)
                                            .with_timestamp(timestamp)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
            let Ok(response) = self
                .call::<_, ListOffsetsResponse>(Some(leader), ApiKey::ListOffsets, 7, &request)
                .await
            else {
                continue;
            };
            for topic in &response.topics {
                for answer in topic.partitions.iter().filter(|a| a.error_code == 0 && a.offset >= 0) {
                    offsets.insert((topic.name.0.to_string(), answer.partition_index), answer.offset);
                }
            }
        }
        Ok(offsets)
    }
}

fn client_id() -> String {
    format!("sediment-cli/{}", env!("CARGO_PKG_VERSION"))
}

/// Whether the broker offers `api` at `version`. Every request is checked
/// before it is sent, so a broker without it is told apart from one that
/// fails (a Kafka-compatible broker may lack an API or a version).
fn offers(offered: &BTreeMap<i16, (i16, i16)>, api: ApiKey, version: i16) -> Result<(), CliError> {
    let refusal = match offered.get(&(api as i16)) {
        Some((min, max)) if (*min..=*max).contains(&version) => return Ok(()),
        Some((min, max)) => format!("the broker offers {api:?} v{min} to v{max}; this command needs v{version}"),
        None => format!("the broker does not offer {api:?}; this command needs v{version}"),
    };
    Err(CliError::kafka(kafka_protocol::ResponseError::UnsupportedVersion.code(), refusal))
}

/// Kafka's refusal of a SASL login, as the error it is.
fn refused_login(e: &anyhow::Error, address: &str) -> Option<CliError> {
    let refused = e.downcast_ref::<AuthenticationRefused>()?;
    Some(CliError::kafka(
        refused.code,
        format!("{address} refused the login: {}", refused.message),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_the_broker_does_not_offer_is_refused_before_it_is_sent() {
        let offered = BTreeMap::from([(ApiKey::Fetch as i16, (4, 11))]);
        assert_eq!(offers(&offered, ApiKey::Fetch, 11), Ok(()));
        assert_eq!(offers(&offered, ApiKey::Fetch, 4), Ok(()));
        for (api, version) in [(ApiKey::Fetch, 12), (ApiKey::Fetch, 3), (ApiKey::Produce, 9)] {
            let refused = offers(&offered, api, version).unwrap_err();
            assert_eq!(refused.exit_code(), super::super::exit::REFUSED);
            assert!(refused.line().contains("UNSUPPORTED_VERSION"), "{}", refused.line());
        }
    }

    /// Every request version the command line sends is one a Kafka 4.0
    /// broker offers. Kafka 4.0 dropped the versions older than Kafka 2.1
    /// (KIP-896); its ranges, from the 4.0.0 message definitions.
    #[test]
    fn every_request_is_one_a_kafka_4_0_broker_offers() {
        let kafka_4_0: BTreeMap<&str, (i16, i16)> = BTreeMap::from([
            ("ApiVersions", (0, 4)),
            ("ConsumerGroupDescribe", (0, 1)),
            ("ConsumerGroupHeartbeat", (0, 1)),
            ("CreatePartitions", (0, 3)),
            ("CreateTopics", (2, 7)),
            ("DeleteGroups", (0, 2)),
            ("DeleteTopics", (1, 6)),
            ("DescribeConfigs", (1, 4)),
            ("DescribeGroups", (0, 6)),
            ("Fetch", (4, 17)),
            ("FindCoordinator", (0, 6)),
            ("IncrementalAlterConfigs", (0, 1)),
            ("ListGroups", (0, 5)),
            ("ListOffsets", (1, 10)),
            ("Metadata", (0, 13)),
            ("OffsetCommit", (2, 9)),
            ("OffsetFetch", (1, 9)),
            ("Produce", (3, 12)),
        ]);
        let sources = [
            include_str!("client.rs"),
            include_str!("cluster.rs"),
            include_str!("consume.rs"),
            include_str!("consume_group.rs"),
            include_str!("group.rs"),
            include_str!("produce.rs"),
            include_str!("topic.rs"),
        ];
        let constants = [
            ("METADATA_VERSION", METADATA_VERSION),
            ("API_VERSIONS_VERSION", API_VERSIONS_VERSION),
            ("HEARTBEAT_VERSION", super::super::member::HEARTBEAT_VERSION),
        ];
        let sent = regex::Regex::new(r"ApiKey::(\w+),\s*(\w+)\)?").unwrap();
        let mut checked = 0;
        for source in sources {
            // The code, not its tests.
            let code = source.split("#[cfg(test)]").next().unwrap_or_default();
            for found in sent.captures_iter(code) {
                let (api, version) = (&found[1], &found[2]);
                let version = version
                    .parse::<i16>()
                    .ok()
                    .or_else(|| constants.iter().find(|(name, _)| *name == version).map(|(_, v)| *v));
                let version = version.unwrap_or_else(|| panic!("{} names its version by something unknown", &found[0]));
                let (min, max) = kafka_4_0.get(api).unwrap_or_else(|| panic!("{api} is not in the table"));
                assert!(
                    (*min..=*max).contains(&version),
                    "{api} v{version} is outside Kafka 4.0's {min}..={max}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 19, "found only {checked} requests");
    }
}
