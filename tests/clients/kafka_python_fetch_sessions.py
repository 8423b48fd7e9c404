"""Fetch sessions (KIP-227) with kafka-python, which uses them by default: a
consumer of every partition of a many-partition topic reads it from the
start, drops half the partitions from its assignment and takes them back
(so its session forgets and re-adds them), and keeps reading while more
records arrive. Run once
with incremental sessions and once without, the digests of what was read
must match.

Usage:
  kafka_python_fetch_sessions.py BOOTSTRAP setup TOPIC PARTITIONS COUNT
  kafka_python_fetch_sessions.py BOOTSTRAP consume TOPIC PARTITIONS INCREMENTAL(0|1) COUNT MORE
    reads COUNT records; once they are read, produces MORE and reads them too.
    Prints "DIGEST <sha256> <records>" and "OK consume".
"""
import hashlib
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def value(partition, index):
    return f"{partition}:{index}".encode()


def produce(bootstrap, topic, partitions, start, count):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for i in range(start, start + count):
        partition = i % partitions
        producer.send(topic, value=value(partition, i // partitions), partition=partition)
    producer.flush(60)
    producer.close()


def setup(bootstrap, topic, partitions, count):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1)], timeout_ms=60000)
    admin.close()
    produce(bootstrap, topic, partitions, 0, count)
    print("OK setup")


def reassign(consumer, partitions, next_offset):
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, next_offset[tp.partition])


def consume(bootstrap, topic, partitions, incremental, count, more):
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_incremental_fetch_sessions=incremental,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        # Small responses, so reading takes many fetches within one session.
        fetch_max_bytes=16 * 1024,
        max_partition_fetch_bytes=1024,
    )
    assigned = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    upper_half = [tp for tp in assigned if tp.partition >= partitions // 2]
    seen = {}
    next_offset = [0] * partitions
    dropped = restored = produced = False
    deadline = time.time() + 150
    while len(seen) < count + more:
        if time.time() > deadline:
            per_partition = {}
            for partition, _ in seen:
                per_partition[partition] = per_partition.get(partition, 0) + 1
            short = [(p, per_partition.get(p, 0)) for p in range(partitions) if per_partition.get(p, 0) < count // partitions]
            sys.exit(f"timed out with {len(seen)} of {count + more} records; short partitions (partition, read): {short[:20]}")
        for tp, records in consumer.poll(timeout_ms=200).items():
            for r in records:
                key = (tp.partition, r.offset)
                if key in seen:
                    sys.exit(f"record {key} read twice")
                seen[key] = r.value
                next_offset[tp.partition] = r.offset + 1
        # (kafka-python's pause() can strand a partition's buffered fetch,
        # so the session's forgets are driven by reassignment instead.)
        if not dropped and len(seen) >= count // 3:
            reassign(consumer, upper_half, next_offset)
            dropped = True
        elif dropped and not restored and len(seen) >= count // 2:
            reassign(consumer, assigned, next_offset)
            restored = True
        if restored and not produced and len(seen) >= count:
            produce(bootstrap, topic, partitions, count, more)
            produced = True
    consumer.close()
    for (partition, offset), v in seen.items():
        if v != value(partition, offset):
            sys.exit(f"partition {partition} offset {offset} holds {v!r}")
    digest = hashlib.sha256()
    for key in sorted(seen):
        digest.update(f"{key[0]}/{key[1]}={seen[key].decode()};".encode())
    print(f"DIGEST {digest.hexdigest()} {len(seen)}")
    print("OK consume")


def main():
    bootstrap, phase, topic = sys.argv[1], sys.argv[2], sys.argv[3]
    partitions = int(sys.argv[4])
    if phase == "setup":
        setup(bootstrap, topic, partitions, int(sys.argv[5]))
    elif phase == "consume":
        consume(bootstrap, topic, partitions, sys.argv[5] == "1", int(sys.argv[6]), int(sys.argv[7]))
    else:
        sys.exit(f"unknown phase {phase}")


if __name__ == "__main__":
    main()
