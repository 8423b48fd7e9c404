"""kafka-python through a leader failover, without restarting the client.

usage: kafka_python_failover.py BOOTSTRAP TOPIC COUNT
Produces COUNT/2 records (acks=all, idempotent), prints HALF and waits for a
line on stdin (the test kills the partition's leader meanwhile), produces the
rest with the same producer, then reads the topic back from the beginning and
prints "OK <distinct records>" if every record arrived exactly once.
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
producer = KafkaProducer(
    bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, retries=2**31 - 1,
    request_timeout_ms=30000, delivery_timeout_ms=120000, retry_backoff_ms=200, metadata_max_age_ms=1000,
)


def send(lo, hi):
    futures = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0) for i in range(lo, hi)]
    producer.flush()
    return [f.get(timeout=120).offset for f in futures]


first = send(0, count // 2)
print("HALF", flush=True)
sys.stdin.readline()
second = send(count // 2, count)
producer.close()
offsets = first + second
assert len(set(offsets)) == count, f"{len(set(offsets))} distinct offsets for {count} records"

consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100)
tp = TopicPartition(topic, 0)
consumer.assign([tp])
consumer.seek_to_beginning(tp)
seen = []
while len(seen) < count:
    batch = consumer.poll(timeout_ms=5000)
    if not batch:
        break
    for records in batch.values():
        seen.extend(r.value.decode() for r in records)
consumer.close()
assert sorted(seen) == sorted(f"v{i}" for i in range(count)), f"{len(seen)} records read, {len(set(seen))} distinct"
assert seen == [f"v{i}" for i in range(count)], "records out of order"
print(f"OK {len(seen)}")
