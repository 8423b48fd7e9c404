//! DescribeTopicPartitions (75, KIP-966): Metadata's topic descriptions,
//! paged by partitions with a cursor. Kafka 3.8+ admin clients describe
//! topics with it. Eligible leader replicas (KIP-966's ELR) do not exist
//! here: both ELR lists are empty.

use bytes::Bytes;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{encode_response, str_bytes, RequestContext};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};

/// Kafka's max.request.partition.size.limit: the most partitions one
/// response holds, whatever the client asks.
pub const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

/// One topic's share of a page: the partitions from `first` (up to its
/// count, or fewer where the page fills). `index` is the topic's place in
/// the list paged.
#[derive(Debug, PartialEq, Eq)]
pub struct Slice {
    pub index: usize,
    pub first: i32,
    pub end: i32,
}

/// Pages `topics` (name, partition count; sorted by name) from `cursor`
/// (topic, first partition) with at most `limit` partitions. Returns the
/// slices and the cursor of the next page, if anything is left.
pub fn page<'a>(topics: &[(&'a str, i32)], cursor: Option<(&str, i32)>, limit: i32) -> (Vec<Slice>, Option<(&'a str, i32)>) {
    let mut left = limit.max(1);
    let mut slices = Vec::new();
    let from = cursor.map_or("", |(topic, _)| topic);
    let mut rest = topics.iter().enumerate().filter(|(_, (name, _))| *name >= from).peekable();
    while let Some((index, &(topic, count))) = rest.next() {
        let first = match cursor {
            Some((at, partition)) if at == topic => partition.min(count),
            _ => 0,
        };
        let end = count.min(first.saturating_add(left));
        slices.push(Slice { index, first, end });
        left -= end - first;
        if end < count {
            return (slices, Some((topic, end)));
        }
        if left == 0 {
            return (slices, rest.peek().map(|(_, (next, _))| (*next, 0)));
        }
    }
    (slices, None)
}

pub(super) fn handle(broker: &Broker, ctx: &RequestContext, req: DescribeTopicPartitionsRequest) -> Bytes {
    let cursor = req.cursor.as_ref().map(|c| (c.topic_name.0.as_str(), c.partition_index));
    let all = req.topics.is_empty();
    let mut names: Vec<String> = if all {
        broker.topics().iter().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let invalid = match cursor {
        Some((topic, _)) if !all && !names.iter().any(|n| n == topic) => {
            Some(format!("the topic list should contain the cursor topic: {topic}"))
        }
        Some((_, partition)) if partition < 0 => Some("the cursor's partition index must not be negative".to_string()),
        _ => None,
    };
    if let Some(message) = invalid {
        tracing::debug!(%message, "DescribeTopicPartitions refused");
        let refused = names.iter().map(|n| topic_error(n, ResponseError::InvalidRequest)).collect();
        return encode_response(ctx, &DescribeTopicPartitionsResponse::default().with_topics(refused));
    }
    // Topics the requester may not describe: left out when it asked for
    // all, refused when it named them. Unknown and refused topics take
    // no room in the page.
    let mut errors = Vec::new();
    let mut known = Vec::new();
    for name in &names {
        let topic = broker.topic(name);
        // A named topic's refusal is counted and logged; the listing's are not.
        let describable = if all {
            ctx.permits(broker, Operation::Describe, ResourceType::Topic, name)
        } else {
            ctx.allowed(broker, Operation::Describe, ResourceType::Topic, name)
        };
        if !describable {
            if !all {
                errors.push((name.as_str(), ResponseError::TopicAuthorizationFailed));
            }
            continue;
        }
        match topic {
            Some(topic) => known.push((name.as_str(), topic)),
            None => errors.push((name.as_str(), ResponseError::UnknownTopicOrPartition)),
        }
    }
    let counts: Vec<(&str, i32)> = known.iter().map(|(name, topic)| (*name, topic.partition_count())).collect();
    let limit = req.response_partition_limit.clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let (slices, next) = page(&counts, cursor, limit);
    let mut response = DescribeTopicPartitionsResponse::default();
    for slice in slices {
        let (_, topic) = &known[slice.index];
        let described = super::metadata::describe_topic(broker, topic);
        let partitions = described
            .partitions
            .into_iter()
            .filter(|p| (slice.first..slice.end).contains(&p.partition_index))
            .map(|p| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(p.error_code)
                    .with_partition_index(p.partition_index)
                    .with_leader_id(p.leader_id)
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replica_nodes)
                    .with_isr_nodes(p.isr_nodes)
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(p.offline_replicas)
            })
            .collect();
        let operations = broker
            .security
            .authorized_operations(ctx.requester(), ResourceType::Topic, &topic.name);
        response.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(described.name)
                .with_topic_id(described.topic_id)
                .with_is_internal(described.is_internal)
                .with_partitions(partitions)
                .with_topic_authorized_operations(operations),
        );
    }
    response
        .topics
        .extend(errors.into_iter().map(|(name, error)| topic_error(name, error)));
    response.next_cursor = next.map(|(topic, partition)| {
        Cursor::default()
            .with_topic_name(TopicName(str_bytes(topic.to_string())))
            .with_partition_index(partition)
    });
    encode_response(ctx, &response)
}

fn topic_error(name: &str, error: ResponseError) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(name.to_string()))))
        .with_error_code(error.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(index: usize, first: i32, end: i32) -> Slice {
        Slice { index, first, end }
    }

    #[test]
    fn pages_fill_across_topics_and_resume_at_the_cursor() {
        let topics = [("a", 3), ("b", 5), ("c", 2)];
        let (first, next) = page(&topics, None, 4);
        assert_eq!(first, vec![slice(0, 0, 3), slice(1, 0, 1)]);
        assert_eq!(next, Some(("b", 1)));
        let (second, next) = page(&topics, next, 4);
        assert_eq!(second, vec![slice(1, 1, 5)]);
        // The page filled exactly at a topic's end: the cursor names the next.
        assert_eq!(next, Some(("c", 0)));
        let (third, next) = page(&topics, next, 4);
        assert_eq!(third, vec![slice(2, 0, 2)]);
        assert_eq!(next, None);
    }

    #[test]
    fn everything_fits_in_one_page_and_a_cursor_past_the_end_is_empty() {
        let topics = [("a", 3), ("b", 5)];
        assert_eq!(page(&topics, None, 2000), (vec![slice(0, 0, 3), slice(1, 0, 5)], None));
        assert_eq!(page(&topics, Some(("b", 9)), 10), (vec![slice(1, 5, 5)], None));
        // A cursor between names starts at the next topic.
        assert_eq!(page(&topics, Some(("aa", 2)), 10), (vec![slice(1, 0, 5)], None));
    }
}
