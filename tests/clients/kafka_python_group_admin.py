"""OffsetDelete with Kafka's rules and ListGroups' type filter (v5), with
kafka-python against a live broker.

Usage: kafka_python_group_admin.py BOOTSTRAP
"""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import GroupIdNotFoundError, GroupSubscribedToTopicError, NoError
from kafka.structs import OffsetAndMetadata


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def main():
    bootstrap = sys.argv[1]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    admin.create_topics([NewTopic("subscribed", 1, 1), NewTopic("other", 1, 1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(10):
        producer.send("subscribed", key=b"k", value=b"v%d" % i)
        producer.send("other", key=b"k", value=b"v%d" % i)
    producer.flush()

    subscribed, other = TopicPartition("subscribed", 0), TopicPartition("other", 0)
    # Offsets for a topic the group will not subscribe to, set while it is empty.
    admin.alter_group_offsets("g", {other: OffsetAndMetadata(5, "", -1)})

    consumer = KafkaConsumer("subscribed", bootstrap_servers=bootstrap, group_id="g",
                             auto_offset_reset="earliest", enable_auto_commit=False)
    deadline = time.time() + 60
    seen = 0
    while seen < 10 and time.time() < deadline:
        seen += sum(len(records) for records in consumer.poll(timeout_ms=500).values())
    check(seen == 10, f"consumed {seen} of 10")
    consumer.commit()

    # A consumer group with members: its subscribed topic's offsets stay,
    # the others go.
    result = admin.delete_group_offsets("g", [subscribed, other])
    check(result[subscribed] is GroupSubscribedToTopicError, f"subscribed topic: {result}")
    check(result[other] is NoError, f"other topic: {result}")
    offsets = admin.list_group_offsets("g")["g"]
    check(subscribed in offsets and other not in offsets, f"offsets after delete: {offsets}")

    # ListGroups v5: every group is classic.
    classic = admin.list_groups(types_filter=["classic"])
    check(any(g[0] == "g" if isinstance(g, tuple) else g.get("group_id") == "g" for g in classic), f"classic groups: {classic}")
    check(not admin.list_groups(types_filter=["consumer"]), "no KIP-848 groups")

    # An unknown group.
    try:
        admin.delete_group_offsets("no-such-group", [subscribed])
        raise AssertionError("an unknown group must get GROUP_ID_NOT_FOUND")
    except GroupIdNotFoundError:
        pass

    # Once the group is empty, any of its offsets can be deleted.
    consumer.close()
    deadline = time.time() + 30
    while time.time() < deadline:
        result = admin.delete_group_offsets("g", [subscribed])
        if result[subscribed] is NoError:
            break
        time.sleep(0.5)
    check(result[subscribed] is NoError, f"after the group emptied: {result}")
    check(subscribed not in admin.list_group_offsets("g").get("g", {}), "offset deleted")
    print("OK group admin")


if __name__ == "__main__":
    main()
