"""Reads an archived topic straight from an S3 server with pyarrow, no
Sediment involved, and dumps every row for the Rust test to compare.

usage: pyarrow_read_archive.py ENDPOINT BUCKET PREFIX TOPIC OUT_TSV
Lists topic=TOPIC/partition=*/…parquet under PREFIX, reads each file, and
writes partition, offset, timestamp (ms), key, value (hex, '-' for null) and
headers (JSON of [key, hex-or-null]) per row. Checks the schema too.
"""
import json
import sys

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

endpoint, bucket, prefix, topic, out = sys.argv[1:6]
fs = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key="sediment", secret_key="sediment-secret", region="us-east-1")
base = f"{bucket}/{prefix}/topic={topic}"
files = [f for f in fs.get_file_info(pafs.FileSelector(base, recursive=True)) if f.path.endswith(".parquet")]
assert files, f"no parquet objects under {base}"

expected = pa.schema([
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary()),
    pa.field("headers", pa.list_(pa.field("item", pa.struct([pa.field("key", pa.string(), nullable=False), pa.field("value", pa.binary())]), nullable=False)), nullable=False),
])

rows = 0
with open(out, "w") as f:
    for info in files:
        partition = int(info.path.split("partition=")[1].split("/")[0])
        table = pq.read_table(info.path, filesystem=fs)
        assert table.schema.remove_metadata().equals(expected), f"{info.path}: schema {table.schema}"
        meta = pq.read_metadata(info.path, filesystem=fs)
        kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
        assert kv.get("sediment.topic") == topic, kv
        stats = meta.row_group(0).column(0).statistics
        assert stats is not None and stats.has_min_max, "offset statistics"
        for r in table.to_pylist():
            ts = int(r["timestamp"].timestamp() * 1000)
            key = "-" if r["key"] is None else r["key"].hex()
            value = "-" if r["value"] is None else r["value"].hex()
            headers = json.dumps([[h["key"], None if h["value"] is None else h["value"].hex()] for h in r["headers"]])
            f.write(f"{partition}\t{r['offset']}\t{ts}\t{key}\t{value}\t{headers}\n")
            rows += 1
print(f"OK {len(files)} files {rows} rows")
