"""Plans a time-range scan of a table with pyiceberg and reports what it
read: manifests opened, data files planned, and the time taken.

usage: plan.py METADATA_LOCATION FROM_MS TO_MS
"""
import datetime
import sys
import time

import pyiceberg.manifest as manifest
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
from pyiceberg.table import StaticTable

location, from_ms, to_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
opened = []
original = manifest.ManifestFile.fetch_manifest_entry


def counting(self, *args, **kwargs):
    opened.append(self.manifest_path)
    return original(self, *args, **kwargs)


manifest.ManifestFile.fetch_manifest_entry = counting
table = StaticTable.from_metadata(location)
iso = lambda ms: datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).isoformat()
manifests = len(table.current_snapshot().manifests(table.io))
t = time.perf_counter()
planned = list(table.scan(row_filter=And(GreaterThanOrEqual("timestamp", iso(from_ms)), LessThan("timestamp", iso(to_ms)))).plan_files())
took = time.perf_counter() - t
print(f"plan     one_hour files_planned={len(planned)} manifests_in_snapshot={manifests} manifests_opened={len(set(opened))} plan_s={took:.2f}")
opened.clear()
t = time.perf_counter()
planned = list(table.scan(row_filter=GreaterThanOrEqual("partition", 3)).plan_files())
print(f"plan     one_partition files_planned={len(planned)} manifests_opened={len(set(opened))} plan_s={time.perf_counter() - t:.2f}")
