"""Topic administration with kafka-python's admin client: DescribeTopicPartitions
(KIP-966) paged with a cursor, DeleteRecords, and ListClientMetricsResources.

Usage: kafka_python_topic_admin.py BOOTSTRAP
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def check(condition, message):
    if not condition:
        sys.exit(f"FAILED: {message}")


def describe_paged(admin, topics, limit):
    """Every (topic, partition) described, following the cursor; and the pages."""
    seen, pages, errors, cursor = [], 0, {}, None
    while True:
        page = admin.describe_topic_partitions(topics, response_partition_limit=limit, cursor=cursor)
        pages += 1
        for topic in page["topics"]:
            if topic["error_code"]:
                errors[topic["name"]] = topic["error_code"]
                continue
            check(topic["topic_id"] is not None, f"{topic['name']} has a topic id")
            for p in topic["partitions"]:
                check(p["error_code"] == 0 and p["leader_id"] >= 0, f"{topic['name']}/{p['partition_index']}: {p}")
                check(p["isr_nodes"] == p["replica_nodes"] == [p["leader_id"]], f"replicas: {p}")
                seen.append((topic["name"], p["partition_index"]))
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, pages, errors
        check(pages < 20, "the cursor must end")


def main():
    bootstrap = sys.argv[1]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("pages-a", 3, 1), NewTopic("pages-b", 5, 1)])

    expected = [("pages-a", p) for p in range(3)] + [("pages-b", p) for p in range(5)]
    seen, pages, errors = describe_paged(admin, ["pages-b", "pages-a", "pages-missing"], 3)
    check(seen == expected, f"paged description: {seen}")
    check(pages == 3, f"8 partitions 3 at a time take 3 pages, took {pages}")
    check(errors == {"pages-missing": 3}, f"an unknown topic is UNKNOWN_TOPIC_OR_PARTITION: {errors}")
    # No topics named: every topic, in one page.
    seen, pages, _ = describe_paged(admin, [], 2000)
    check(set(expected) <= set(seen) and pages == 1, f"all topics: {seen}")

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(100):
        producer.send("pages-a", value=b"%d" % i, partition=0)
    producer.flush()
    producer.close()
    result = admin.delete_records({TopicPartition("pages-a", 0): 60})
    low = result[TopicPartition("pages-a", 0)]["low_watermark"]
    check(low == 60, f"DeleteRecords answered low watermark {low}")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    earliest = consumer.beginning_offsets([TopicPartition("pages-a", 0)])
    consumer.close()
    check(earliest[TopicPartition("pages-a", 0)] == 60, f"earliest after DeleteRecords: {earliest}")
    # ListClientMetricsResources (v0): no client metrics subscriptions exist.
    listed = admin.list_config_resources()
    check(listed == {}, f"client metrics resources: {listed}")
    admin.close()
    print("OK topic admin")


if __name__ == "__main__":
    main()
