"""kcat (librdkafka 2.0 from Debian) round trip against a Sediment broker.

usage: kcat_roundtrip.py BOOTSTRAP COUNT
Creates a 3-partition topic (kafka-python admin), produces COUNT keyed
records with kcat (acks=all), consumes them with kcat and checks every key,
value and the per-partition order; then once per compression codec.
"""
import subprocess
import sys
import tempfile
import uuid

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

bootstrap, count = sys.argv[1], int(sys.argv[2])


def round_trip(topic, partitions, n, codec=None):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, partitions, 1)])
    admin.close()
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        for i in range(n):
            f.write(f"key-{i}\tvalue-{i}\n")
        f.flush()
        args = ["kcat", "-b", bootstrap, "-P", "-t", topic, "-K", "\t", "-X", "acks=all", "-H", "source=kcat", "-l", f.name]
        if codec:
            args += ["-z", codec]
        subprocess.run(args, check=True, timeout=120)
    out = subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%p\t%o\t%k\t%s\t%h\n"],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout
    seen = set()
    indexes = set()
    last = {}
    for line in out.splitlines():
        p, o, k, v, h = line.split("\t")
        i = int(k.removeprefix("key-"))
        assert v == f"value-{i}", f"value of {k}: {v}"
        assert h == "source=kcat", f"headers of {k}: {h}"
        assert (p, o) not in seen and i not in indexes, f"duplicate {k} at {p}/{o}"
        seen.add((p, o))
        indexes.add(i)
        assert last.get(p, -1) < i, f"order broken in partition {p}"
        last[p] = i
    assert len(seen) == n, f"{len(seen)} of {n} records came back"


suffix = uuid.uuid4().hex[:8]
round_trip(f"kcat-{suffix}", 3, count)
for codec in ["gzip", "snappy", "lz4", "zstd"]:
    round_trip(f"kcat-{codec}-{suffix}", 2, 3000, codec)
print("OK")
