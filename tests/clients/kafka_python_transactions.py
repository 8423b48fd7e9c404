"""Transactions with kafka-python against a live broker: a transactional
consume-transform-produce loop with offsets committed in the transaction,
an aborted transaction, a fenced zombie producer, read_committed against
read_uncommitted consumers, and the admin view of transactions.

Usage: kafka_python_transactions.py BOOTSTRAP setup|transform [DIE_AFTER]|extras|verify KILLED_OUTPUTS
"""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

INPUTS = 200


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def consume_all(bootstrap, topic, isolation, expected, timeout=60):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    values = []
    deadline = time.time() + timeout
    idle_since = None
    while time.time() < deadline:
        batch = consumer.poll(timeout_ms=500)
        got = [r.value for records in batch.values() for r in records]
        values.extend(got)
        if len(values) >= expected:
            # Wait a little for anything past what is expected.
            if idle_since is None:
                idle_since = time.time()
            if time.time() - idle_since > 2:
                break
    consumer.close()
    return values


def setup(bootstrap):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    admin.create_topics([NewTopic("tx-in", 1, 1), NewTopic("tx-out", 2, 1)])
    plain = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(INPUTS):
        plain.send("tx-in", value=b"in-%d" % i)
    plain.flush()
    print("OK setup")


def transform(bootstrap, die_after):
    """Consume-transform-produce: outputs and input offsets commit together.
    With die_after, stops mid-way through transaction number die_after
    (outputs sent, not committed) and waits to be killed."""
    consumer = KafkaConsumer("tx-in", bootstrap_servers=bootstrap, group_id="xform",
                             isolation_level="read_committed", auto_offset_reset="earliest",
                             enable_auto_commit=False)
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="xform-1")
    producer.init_transactions()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    transactions = 0
    deadline = time.time() + 90
    while time.time() < deadline:
        committed = admin.list_group_offsets("xform")["xform"].get(TopicPartition("tx-in", 0))
        if committed is not None and committed.offset >= INPUTS:
            break
        batch = consumer.poll(timeout_ms=500, max_records=37)
        if not batch:
            continue
        producer.begin_transaction()
        offsets = {}
        sent = 0
        for tp, records in batch.items():
            for r in records:
                producer.send("tx-out", value=r.value.replace(b"in-", b"out-"))
                sent += 1
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        if die_after is not None and transactions == die_after:
            producer.flush()
            print("MID-TRANSACTION", sent, flush=True)
            time.sleep(600)
        producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
        producer.commit_transaction()
        transactions += 1
    committed = admin.list_group_offsets("xform")["xform"][TopicPartition("tx-in", 0)]
    check(committed.offset == INPUTS, f"committed offset {committed.offset} of {INPUTS}")
    consumer.close()
    producer.close()
    print("OK transform", transactions)


def extras(bootstrap):
    """An aborted transaction and a fenced zombie."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="aborter")
    producer.init_transactions()
    producer.begin_transaction()
    for i in range(20):
        producer.send("tx-out", value=b"aborted-%d" % i)
    producer.flush()
    producer.abort_transaction()
    producer.close()

    # A second producer with the same id fences the first, whose open
    # transaction is aborted.
    zombie = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="zombie")
    zombie.init_transactions()
    zombie.begin_transaction()
    for i in range(10):
        zombie.send("tx-out", value=b"zombie-%d" % i)
    zombie.flush()
    successor = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="zombie")
    successor.init_transactions()
    fenced = False
    try:
        zombie.commit_transaction()
    except Exception as e:  # ProducerFencedError
        fenced = True
        print("zombie refused:", type(e).__name__, e)
    check(fenced, "the zombie's commit was accepted")
    successor.begin_transaction()
    successor.send("tx-out", value=b"successor-0")
    successor.commit_transaction()
    successor.close()
    print("OK extras")


def verify(bootstrap, killed_outputs):
    """read_committed sees every output once and nothing aborted;
    read_uncommitted sees the aborted records too."""
    committed_values = consume_all(bootstrap, "tx-out", "read_committed", INPUTS + 1)
    outputs = sorted(v for v in committed_values if v.startswith(b"out-"))
    check(outputs == sorted(b"out-%d" % i for i in range(INPUTS)),
          f"read_committed saw {len(outputs)} outputs, {len(set(outputs))} distinct")
    check(not any(v.startswith(b"aborted-") or v.startswith(b"zombie-") for v in committed_values),
          "read_committed saw aborted records")
    check(b"successor-0" in committed_values, "the successor's commit is missing")

    uncommitted = consume_all(bootstrap, "tx-out", "read_uncommitted", INPUTS + 31 + killed_outputs)
    check(sum(v.startswith(b"aborted-") for v in uncommitted) == 20, "read_uncommitted misses aborted records")
    check(sum(v.startswith(b"zombie-") for v in uncommitted) == 10, "read_uncommitted misses the zombie's records")
    outputs_uncommitted = sum(v.startswith(b"out-") for v in uncommitted)
    check(outputs_uncommitted >= INPUTS + killed_outputs,
          f"read_uncommitted saw {outputs_uncommitted} outputs: the killed transaction's are missing")

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    listed = {t.transactional_id: t.state for ts in admin.list_transactions().values() for t in ts}
    check(set(listed) >= {"xform-1", "aborter", "zombie"}, f"listed: {listed}")
    described = admin.describe_transactions(["xform-1", "aborter"])
    print("described:", described)
    check("COMMIT" in str(described["xform-1"].state).upper(), f"xform-1: {described['xform-1']}")
    check("ABORT" in str(described["aborter"].state).upper(), f"aborter: {described['aborter']}")
    ongoing = [t for ts in admin.list_transactions(state_filters=["Ongoing"]).values() for t in ts]
    check(not ongoing, f"transactions left open: {ongoing}")
    print("OK verify", len(committed_values), len(uncommitted))


def main():
    bootstrap, phase = sys.argv[1], sys.argv[2]
    if phase == "setup":
        setup(bootstrap)
    elif phase == "transform":
        transform(bootstrap, int(sys.argv[3]) if len(sys.argv) > 3 else None)
    elif phase == "extras":
        extras(bootstrap)
    elif phase == "verify":
        verify(bootstrap, int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown phase {phase}")


if __name__ == "__main__":
    main()
