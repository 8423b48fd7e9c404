"""kafka-python (pure Python client) round trip against a Sediment broker.

usage: kafka_python_roundtrip.py BOOTSTRAP COUNT
Creates a 3-partition topic, produces COUNT keyed records with headers and
timestamps (acks=all, idempotent), consumes them back and checks each field
and the per-partition order; then does the same for every compression codec.
"""
import sys
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

bootstrap, count = sys.argv[1], int(sys.argv[2])


def record(i):
    return (f"key-{i}".encode(), f"value-{i}".encode() * 3, [("index", str(i).encode())], 1_700_000_000_000 + i)


def round_trip(topic, partitions, n, **producer_args):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, **producer_args)
    futures = []
    for i in range(n):
        key, value, headers, ts = record(i)
        futures.append(producer.send(topic, key=key, value=value, headers=headers, timestamp_ms=ts))
    producer.flush()
    placed = {}
    for i, f in enumerate(futures):
        md = f.get(timeout=60)
        placed[(md.partition, md.offset)] = i
    producer.close()
    assert len(placed) == n, f"{len(placed)} distinct positions for {n} records"

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen = {}
    last_index = {}
    while len(seen) < n:
        batches = consumer.poll(timeout_ms=2000)
        if not batches:
            raise SystemExit(f"stalled at {len(seen)} of {n} records")
        for tp, messages in batches.items():
            for m in messages:
                pos = (tp.partition, m.offset)
                assert pos not in seen, f"duplicate {pos}"
                i = placed[pos]
                key, value, headers, ts = record(i)
                assert m.key == key and m.value == value, f"record {i} differs"
                assert list(m.headers) == headers, f"record {i} headers {m.headers}"
                assert m.timestamp == ts, f"record {i} timestamp {m.timestamp}"
                assert last_index.get(tp.partition, -1) < i, f"order broken in partition {tp.partition}"
                last_index[tp.partition] = i
                seen[pos] = i
    consumer.close()


def admin_errors(topic):
    from kafka.admin import ConfigResource, ConfigResourceType
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "soon"})])
    assert "Error 40" in str(result), f"invalid config must be INVALID_CONFIG (40): {result}"
    result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "60000"})])
    assert "Error" not in str(result), result
    admin.close()


suffix = uuid.uuid4().hex[:8]
admin_errors(f"py-admin-{suffix}")
round_trip(f"py-{suffix}", 3, count)
for codec in ["gzip", "snappy", "lz4", "zstd"]:
    round_trip(f"py-{codec}-{suffix}", 2, 3000, compression_type=codec)
print("OK")
