//! `sediment cluster info|health`: the brokers, the controller, and the
//! partitions that are under-replicated (an ISR smaller than the replicas)
//! or offline (no leader), from one Metadata request. `health` exits with
//! `exit::UNHEALTHY` when any partition is either, for scripts and probes.

use kafka_protocol::messages::MetadataResponse;
use serde_json::json;

use super::client::Client;
use super::output::{ids, table};
use super::{print, CliError, Globals};

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Brokers, controller, and partitions needing attention.
    Info,
    /// Exit non-zero if a partition is under-replicated or offline.
    Health,
}

/// A partition that needs attention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProblem {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// What `cluster info` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub cluster_id: String,
    pub controller: i32,
    pub brokers: Vec<(i32, String)>,
    pub topics: usize,
    pub partitions: usize,
    pub under_replicated: Vec<PartitionProblem>,
    pub offline: Vec<PartitionProblem>,
}

impl ClusterView {
    pub fn of(metadata: &MetadataResponse) -> Self {
        let mut view = ClusterView {
            cluster_id: metadata.cluster_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
            controller: metadata.controller_id.0,
            brokers: metadata
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
                .collect(),
            topics: metadata.topics.len(),
            partitions: 0,
            under_replicated: Vec::new(),
            offline: Vec::new(),
        };
        view.brokers.sort();
        for topic in &metadata.topics {
            let name = topic.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            for p in &topic.partitions {
                view.partitions += 1;
                let problem = PartitionProblem {
                    topic: name.clone(),
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                };
                if p.leader_id.0 < 0 || p.error_code != 0 {
                    view.offline.push(problem);
                } else if problem.isr.len() < problem.replicas.len() {
                    view.under_replicated.push(problem);
                }
            }
        }
        view.under_replicated
            .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        view.offline.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        view
    }

    pub fn healthy(&self) -> bool {
        self.under_replicated.is_empty() && self.offline.is_empty()
    }

    fn problems_text(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .offline
            .iter()
            .map(|p| ("offline", p))
            .chain(self.under_replicated.iter().map(|p| ("under-replicated", p)))
            .map(|(state, p)| {
                vec![
                    p.topic.clone(),
                    p.partition.to_string(),
                    state.to_string(),
                    p.leader.to_string(),
                    ids(&p.replicas),
                    ids(&p.isr),
                ]
            })
            .collect();
        if rows.is_empty() {
            return String::new();
        }
        table(&["TOPIC", "PARTITION", "STATE", "LEADER", "REPLICAS", "ISR"], &rows)
    }

    pub fn text(&self) -> String {
        let mut out = format!(
            "cluster {}  controller {}  brokers {}  topics {}  partitions {}  under-replicated {}  offline {}\n\n",
            self.cluster_id,
            self.controller,
            self.brokers.len(),
            self.topics,
            self.partitions,
            self.under_replicated.len(),
            self.offline.len()
        );
        let rows: Vec<Vec<String>> = self
            .brokers
            .iter()
            .map(|(id, address)| {
                let role = if *id == self.controller { "controller" } else { "" };
                vec![id.to_string(), address.clone(), role.to_string()]
            })
            .collect();
        out.push_str(&table(&["BROKER", "ADDRESS", "ROLE"], &rows));
        let problems = self.problems_text();
        if !problems.is_empty() {
            out.push('\n');
            out.push_str(&problems);
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let problems = |list: &[PartitionProblem]| {
            list.iter()
                .map(|p| json!({"topic": p.topic, "partition": p.partition, "leader": p.leader, "replicas": p.replicas, "isr": p.isr}))
                .collect::<Vec<_>>()
        };
        json!({
            "cluster_id": self.cluster_id,
            "controller": self.controller,
            "brokers": self.brokers.iter().map(|(id, address)| json!({"id": id, "address": address})).collect::<Vec<_>>(),
            "topics": self.topics,
            "partitions": self.partitions,
            "under_replicated": problems(&self.under_replicated),
            "offline": problems(&self.offline),
            "healthy": self.healthy(),
        })
    }
}

pub async fn run(globals: &Globals, command: ClusterCommand) -> Result<(), CliError> {
    let mut client = Client::connect(globals).await?;
    let view = ClusterView::of(&client.metadata(None).await?);
    match command {
        ClusterCommand::Info => print(globals.format, || view.text(), || view.json()),
        ClusterCommand::Health => {
            print(
                globals.format,
                || {
                    if view.healthy() {
                        format!("healthy: {} brokers, {} partitions\n", view.brokers.len(), view.partitions)
                    } else {
                        view.problems_text()
                    }
                },
                || view.json(),
            );
            if !view.healthy() {
                return Err(CliError::Unhealthy(format!(
                    "{} partitions under-replicated, {} offline",
                    view.under_replicated.len(),
                    view.offline.len()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn partition(index: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> MetadataResponsePartition {
        MetadataResponsePartition::default()
            .with_partition_index(index)
            .with_leader_id(BrokerId(leader))
            .with_replica_nodes(replicas.iter().map(|r| BrokerId(*r)).collect())
            .with_isr_nodes(isr.iter().map(|r| BrokerId(*r)).collect())
    }

    #[test]
    fn under_replicated_and_offline_partitions_make_the_cluster_unhealthy() {
        let mut metadata = MetadataResponse::default()
            .with_cluster_id(Some(StrBytes::from_static_str("c")))
            .with_controller_id(BrokerId(2))
            .with_brokers(
                [3, 1, 2]
                    .iter()
                    .map(|id| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(*id))
                            .with_host(StrBytes::from_static_str("h"))
                            .with_port(9092)
                    })
                    .collect(),
            )
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                .with_partitions(vec![partition(0, 1, &[1, 2, 3], &[1, 2, 3])])]);
        let healthy = ClusterView::of(&metadata);
        assert!(healthy.healthy());
        assert_eq!(healthy.brokers.iter().map(|b| b.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(healthy.text().contains("2       h:9092   controller"), "{}", healthy.text());

        metadata.topics[0].partitions.push(partition(1, 1, &[1, 2, 3], &[1, 2]));
        metadata.topics[0].partitions.push(partition(2, -1, &[3], &[3]).with_error_code(5));
        let view = ClusterView::of(&metadata);
        assert!(!view.healthy());
        assert_eq!(view.under_replicated.len(), 1);
        assert_eq!(view.offline.len(), 1);
        let json = view.json();
        assert_eq!(json["under_replicated"][0]["isr"], json!([1, 2]));
        assert_eq!(json["offline"][0]["partition"], 2);
        assert_eq!(json["healthy"], false);
        assert!(view.text().contains("under-replicated"));
    }
}
