"""Reads a topic's Iceberg table the way data teams do, with no Sediment code
involved: pyiceberg through the REST catalog on the broker's HTTP port and
from the metadata location (StaticTable), and DuckDB's iceberg extension
with iceberg_scan. Prints one JSON report; with OUT_TSV, dumps every row
read through the catalog (the format of pyarrow_read_archive.py).

usage: iceberg_read_table.py CATALOG_URI S3_ENDPOINT NAMESPACE TABLE OFFSET_AT TIMESTAMP_MS_AT [OUT_TSV]
The S3 keys are not given to the catalog client: the broker vends them.
"""
import datetime
import json
import os
import sys

import duckdb
import duckdb_ext
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.expressions import GreaterThanOrEqual
from pyiceberg.table import StaticTable

uri, endpoint, namespace, name, offset_at, ts_at = sys.argv[1:7]
out = sys.argv[7] if len(sys.argv) > 7 else None
offset_at, ts_at = int(offset_at), int(ts_at)
keys = {"s3.endpoint": endpoint, "s3.access-key-id": "sediment", "s3.secret-access-key": "sediment-secret",
        "s3.path-style-access": "true", "s3.region": "us-east-1"}

catalog = RestCatalog("sediment", uri=uri)
report = {
    "namespaces": [list(n) for n in catalog.list_namespaces()],
    "tables": [list(t) for t in catalog.list_tables(namespace)],
}
table = catalog.load_table(f"{namespace}.{name}")
report["metadata_location"] = table.metadata_location
report["schema"] = [(f.name, str(f.field_type), f.required) for f in table.schema().fields]
report["snapshots"] = [s.snapshot_id for s in table.metadata.snapshots]
arrow = table.scan().to_arrow()
report["rows"] = arrow.num_rows
partitions = arrow.column("partition").to_pylist()
offsets = arrow.column("offset").to_pylist()
report["distinct_positions"] = len(set(zip(partitions, offsets)))
report["partitions"] = sorted(set(partitions))
if out:
    with open(out, "w") as f:
        for r in arrow.to_pylist():
            ts = int(r["timestamp"].timestamp() * 1000)
            key = "-" if r["key"] is None else r["key"].hex()
            value = "-" if r["value"] is None else r["value"].hex()
            headers = json.dumps([[h["key"], None if h["value"] is None else h["value"].hex()] for h in r["headers"]])
            f.write(f"{r['partition']}\t{r['offset']}\t{ts}\t{key}\t{value}\t{headers}\n")

# Pruning: the files a filtered scan plans, by statistics alone.
report["files"] = sorted(t.file.file_path for t in table.scan().plan_files())
report["files_offset_at"] = sorted(t.file.file_path for t in table.scan(row_filter=GreaterThanOrEqual("offset", offset_at)).plan_files())
at = datetime.datetime.fromtimestamp(ts_at / 1000, tz=datetime.timezone.utc).isoformat()
report["files_timestamp_at"] = sorted(t.file.file_path for t in table.scan(row_filter=GreaterThanOrEqual("timestamp", at)).plan_files())

# Time travel: every snapshot still in the metadata, with its row count
# where its files can be read.
travel = {}
for s in table.metadata.snapshots:
    try:
        travel[str(s.snapshot_id)] = table.scan(snapshot_id=s.snapshot_id).to_arrow().num_rows
    except Exception as e:  # noqa: BLE001 - reported to the test
        travel[str(s.snapshot_id)] = f"unreadable: {type(e).__name__}"
report["time_travel"] = travel

static = StaticTable.from_metadata(table.metadata_location, properties=keys)
report["static_rows"] = static.scan().to_arrow().num_rows

con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
con.execute(f"SET extension_directory = '{os.path.join(duckdb_ext.__path__[0], 'extensions')}'")
for ext in ("httpfs", "avro", "iceberg"):
    con.execute(f"LOAD {ext}")
host = endpoint.split("://", 1)[1]
con.execute(f"CREATE SECRET (TYPE s3, KEY_ID 'sediment', SECRET 'sediment-secret', REGION 'us-east-1', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)")
row = con.execute(f"SELECT count(*), count(DISTINCT \"offset\"), min(\"offset\"), max(\"offset\") FROM iceberg_scan('{table.metadata_location}')").fetchone()
report["duckdb"] = {"rows": row[0], "min_offset": row[2], "max_offset": row[3]}
print(json.dumps(report))
