#!/usr/bin/env bash
# The full test suite, from a fresh machine: installs what the tests need
# when it is missing, then runs formatting, lints, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: cmake builds librdkafka for the rdkafka crate (tests and
# the load tool), curl's header is needed by that build, kcat is a client
# under test, protoc builds the etcd client, etcd-server is the real etcd the
# cluster tests run against, nftables cuts links between network namespaces
# in the network-partition test (iproute2 makes the namespaces), and
# librdkafka's SSL and SCRAM (the security tests) build against libssl-dev;
# the deploy checks make test certificates with the openssl CLI.
need=()
for pkg in cmake kcat libcurl4-openssl-dev g++ protobuf-compiler etcd-server nftables iproute2 libssl-dev pkg-config openssl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# promtool: the deploy checks run it on the chart's alert rules (check rules,
# and test rules with .ci/alert-tests.yaml). It comes from Debian's
# prometheus package, unpacked rather than installed: installing the package
# would start a Prometheus server on :9090, and its recommended
# prometheus-node-exporter another on :9100.
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing: promtool (Debian's prometheus 2.42, /usr/local/bin/promtool only)"
  dl="$(mktemp -d)"
  chmod 755 "$dl"
  (cd "$dl" && { apt-get download -qq prometheus 2>/dev/null \
                 || { apt-get update -qq && apt-get download -qq prometheus; }; })
  dpkg-deb --fsys-tarfile "$dl"/prometheus_*.deb | tar -xO ./usr/bin/promtool >/usr/local/bin/promtool
  chmod 755 /usr/local/bin/promtool
  rm -rf "$dl"
fi

# Python clients under test (kafka-python with its compression codecs) and
# pyarrow, which reads the archive straight from the S3 test server.
if ! python3 -c "import kafka, snappy, lz4.frame, zstandard, pyarrow" 2>/dev/null; then
  echo "installing: kafka-python, codecs and pyarrow"
  python3 -m pip install -q --disable-pip-version-check 'kafka-python==3.0.12' python-snappy lz4 zstandard pyarrow
fi

# The Iceberg engines the table tests read with: pyiceberg, and DuckDB with
# its iceberg, avro and httpfs extensions as PyPI packages (pinned with
# their DuckDB; DuckDB cannot download extensions offline).
if ! python3 -c "import pyiceberg, duckdb, duckdb_ext" 2>/dev/null; then
  echo "installing: pyiceberg, duckdb and its iceberg extension"
  python3 -m pip install -q --disable-pip-version-check 'pyiceberg[pyarrow]==0.12.0' 'duckdb==1.4.4' \
    'duckdb-ext-iceberg==1.4.4.20260205' 'duckdb-ext-avro==1.4.4.20260205' 'duckdb-ext-httpfs==1.4.4.20260205'
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test

# The container image and the Helm chart, checked offline (and the chart's
# rendered config run against the debug binary the tests just built).
bash .ci/deploy-checks.sh
