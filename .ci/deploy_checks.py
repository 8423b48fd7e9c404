"""Offline checks of helm/sediment, run by .ci/deploy-checks.sh.

Lints the chart, renders it for several value sets into OUT_DIR (one folder
per set, one file per template, for kubernetes-validate, yamllint and
checkov to read), and checks what no generic tool can: bad values are
refused, the rendered TOML holds only keys the broker knows, the Grafana
dashboard is well formed, every value is documented in
helm/sediment/README.md.

When a broker binary is at hand (SEDIMENT_BIN, or the debug or release
build under CARGO_TARGET_DIR or target/), it also runs what the chart
renders:
- one broker (single-broker mode) with the broker container's environment
  and TOML file exactly as rendered, on loopback ports and a scratch data
  dir: /readyz, then SIGTERM and exit 0 within the rendered
  terminationGracePeriodSeconds;
- the 3-broker cluster (external etcd, IRSA): each pod's command, args and
  environment as rendered, with a real 3-member etcd and an S3 test server
  (moto) in place of the cluster's (see run_rendered_cluster for what is
  substituted), then produce and consume through it, /v1/cluster, the
  alert rules' and the Grafana dashboard's metric names against a live
  /metrics scrape, a controlled shutdown of one broker and a read of
  everything through the other two;
- the bundled etcd's 3 members, each as rendered, with the etcd binary:
  one cluster, the rendered probes answer;
- the TLS/SASL renders, with certificates made by the openssl CLI and the
  Secrets written as the kubelet writes them: one broker with mutual TLS
  (a client without a certificate refused, the rendered helm test script
  run with kcat), and the 3-broker SASL_SSL cluster (check_secure_cluster).
A chart whose flags, variables or config keys the binary refuses fails
there.

Usage: python deploy_checks.py OUT_DIR KUBE_VERSION...
"""

import importlib.metadata
import json
import os
import re
import shutil
import signal
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "sediment"
NAMESPACE = "streaming"

# metrics.prometheusRule.runbookBaseUrl in the value sets that set one.
RUNBOOKS = "https://github.com/example/sediment/blob/main/docs/operations.md"

# Value sets that must render. Each is a dict of overrides on values.yaml.
GOOD = {
    "defaults": {},
    "emptydir": {
        "persistence": {"enabled": False},
        "archive": {"url": "s3://sediment-archive/prod", "env": {"AWS_REGION": "eu-west-1"}},
    },
    "archive-secret": {
        "archive": {
            "url": "s3://sediment-archive/prod",
            "credentials": {"source": "secret", "secretName": "sediment-s3"},
            "env": {"AWS_ENDPOINT_URL": "http://minio.storage:9000", "AWS_ALLOW_HTTP": True},
        },
        "broker": {
            "config": {"local_disk_budget_bytes": 40 * 2**30, "flush": "interval",
                       "auto_create_topics": False, "default_partitions": 6},
            "topicDefaults": {"retention.ms": "259200000", "local.retention.ms": "7200000"},
        },
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "networkPolicy": {"enabled": True,
                          "kafkaFrom": [{"namespaceSelector": {"matchLabels": {"team": "orders"}}}]},
    },
    "irsa": {
        "archive": {
            "url": "s3://sediment-archive/prod",
            "env": {"AWS_REGION": "us-east-1"},
            "workloadIdentity": {"awsRoleArn": "arn:aws:iam::123456789012:role/sediment-archive"},
        },
        "persistence": {"storageClass": "gp3", "size": "200Gi"},
        "broker": {"shutdownTimeoutMs": 30000},
    },
    "cluster-bundled-etcd": {
        "replicas": 3,
        "etcd": {"bundled": {"enabled": True, "replicas": 3, "persistence": {"storageClass": "gp3"}}},
        "archive": {
            "url": "s3://sediment-archive/orders",
            "credentials": {"source": "secret", "secretName": "sediment-s3"},
            "env": {"AWS_REGION": "eu-west-1"},
        },
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
        "updatePartition": 2,
        "metrics": {"serviceMonitor": {"enabled": True},
                    "prometheusRule": {"enabled": True, "runbookBaseUrl": RUNBOOKS},
                    "grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                         "labels": {"team": "streaming"},
                                         "annotations": {"grafana_folder": "Kafka"}}},
        "networkPolicy": {"enabled": True,
                          "kafkaFrom": [{"namespaceSelector": {"matchLabels": {"team": "orders"}}}]},
        "externalAccess": {"enabled": True, "type": "LoadBalancer",
                           "loadBalancer": {"hostPattern": "$(POD_NAME).kafka.example.com",
                                            "externalDns": True}},
    },
    # The set run_rendered_cluster starts as local processes.
    "cluster-external-etcd-irsa": {
        "replicas": 3,
        "etcd": {"external": {"endpoints": [
            "http://etcd-0.etcd.platform.svc.cluster.local:2379",
            "http://etcd-1.etcd.platform.svc.cluster.local:2379",
            "http://etcd-2.etcd.platform.svc.cluster.local:2379",
        ]}},
        "archive": {
            "url": "s3://sediment-archive/orders",
            "env": {"AWS_REGION": "us-east-1"},
            "workloadIdentity": {"awsRoleArn": "arn:aws:iam::123456789012:role/sediment-archive"},
        },
        "broker": {"clusterName": "orders",
                   "cluster": {"etcdLeaseTtlMs": 6000, "replicaLagTimeMaxMs": 10000,
                               "defaultReplicationFactor": 3, "offsetsTopicPartitions": 4,
                               "offsetsTopicReplicationFactor": 3}},
        "persistence": {"storageClass": "gp3", "size": "200Gi"},
        # The alert tests (.ci/alert-tests.yaml) run on this set's rules.
        "metrics": {"prometheusRule": {"enabled": True, "runbookBaseUrl": RUNBOOKS,
                                       "consumerGroupLag": {"enabled": True, "records": 1000}},
                    "grafanaDashboard": {"enabled": True}},
    },
    "cluster-nodeport-etcd-1": {
        "replicas": 1,
        "etcd": {"bundled": {"enabled": True, "replicas": 1, "persistence": {"enabled": False}}},
        "persistence": {"enabled": False},
        "archive": {"url": "gs://sediment-archive/dev"},
        "externalAccess": {"enabled": True, "type": "NodePort", "nodePort": {"nodePortPrefix": 3209}},
    },
    "gke-ipv6": {
        "archive": {
            "url": "gs://sediment-archive/prod",
            "workloadIdentity": {"gcpServiceAccount": "sediment@my-project.iam.gserviceaccount.com"},
        },
        "broker": {"listenAddress": "::", "kafkaPort": 19092, "httpPort": 19644},
        "fullnameOverride": "kafka",
        "terminationGracePeriodSeconds": 60,
    },
    # TLS and SASL: the set run_rendered_cluster starts secured. SASL_SSL
    # with PLAIN (an admin from the users file) and SCRAM-SHA-512, the
    # authorizer, the INTERNAL listener for replication, a bearer token on
    # /metrics (and in the ServiceMonitor), a NetworkPolicy, and a helm test
    # user.
    "cluster-tls-sasl": {
        "replicas": 3,
        "etcd": {"external": {"endpoints": [
            "http://etcd-0.etcd.platform.svc.cluster.local:2379",
            "http://etcd-1.etcd.platform.svc.cluster.local:2379",
            "http://etcd-2.etcd.platform.svc.cluster.local:2379",
        ]}},
        "archive": {
            "url": "s3://sediment-archive/secure",
            "env": {"AWS_REGION": "us-east-1"},
            "workloadIdentity": {"awsRoleArn": "arn:aws:iam::123456789012:role/sediment-archive"},
        },
        # Every request over a threshold of 0 is a slow request: the live
        # scrape then has sediment_slow_requests_total series.
        "broker": {"clusterName": "secure",
                   "cluster": {"etcdLeaseTtlMs": 6000, "replicaLagTimeMaxMs": 10000,
                               "offsetsTopicPartitions": 4},
                   "config": {"slow_request_threshold_ms": 0}},
        "tls": {"enabled": True, "secretName": "sediment-tls"},
        "sasl": {"enabled": True, "mechanisms": ["SCRAM-SHA-512", "PLAIN"],
                 "plainUsers": {"secretName": "sediment-plain-users"}},
        "auth": {"authorizer": True, "superUsers": ["User:admin"]},
        "metrics": {"tokenSecretName": "sediment-metrics-token",
                    "serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "networkPolicy": {"enabled": True,
                          "kafkaFrom": [{"namespaceSelector": {"matchLabels": {"team": "orders"}}}]},
        "tests": {"sasl": {"username": "helm-test", "passwordSecretName": "sediment-helm-test"},
                  "tls": {"caSecretName": "sediment-ca"}},
    },
    # Mutual TLS on one broker (SSL, client certificates as principals),
    # the authorizer with a certificate subject as super user, and the helm
    # test's own certificate; run_rendered_broker runs it.
    "mtls-single": {
        "tls": {"enabled": True, "secretName": "sediment-tls",
                "clientCA": {"secretName": "sediment-client-ca", "key": "ca.pem"}},
        "auth": {"authorizer": True, "superUsers": ["User:CN=sediment-admin,O=Example"],
                 "connectionsMaxReauthMs": 3600000},
        "tests": {"tls": {"caSecretName": "sediment-ca", "clientSecretName": "sediment-admin-cert"}},
    },
}

# Values that must be refused by values.schema.json, with why.
CLUSTER = {"archive": {"url": "s3://b/p"}, "etcd": {"external": {"endpoints": ["http://etcd:2379"]}}}
BAD_SCHEMA = {
    "replicas: 3 without etcd": {"replicas": 3, "archive": {"url": "s3://b/p"}},
    "replicas: 0": {"replicas": 0},
    "negative replicas": {"replicas": -1},
    "a bundled etcd of 2 members": {"etcd": {"bundled": {"enabled": True, "replicas": 2}}},
    "both a bundled and an external etcd": {
        "etcd": {"bundled": {"enabled": True}, "external": {"endpoints": ["http://etcd:2379"]}}},
    "an etcd endpoint without a scheme": {"etcd": {"external": {"endpoints": ["etcd:2379"]}}},
    "an etcd endpoint without a port": {"etcd": {"external": {"endpoints": ["http://etcd"]}}},
    "etcd.endpoints instead of etcd.external.endpoints": {"etcd": {"endpoints": ["http://etcd:2379"]}},
    "3 brokers without an archive URL": {"replicas": 3, "etcd": CLUSTER["etcd"]},
    "3 brokers on a file:// archive": {"replicas": 3, "etcd": CLUSTER["etcd"],
                                       "archive": {"url": "file:///var/lib/sediment/archive"}},
    "an etcd lease below 1 s": {**CLUSTER, "broker": {"cluster": {"etcdLeaseTtlMs": 500}}},
    "a replication factor of 0": {**CLUSTER, "broker": {"cluster": {"defaultReplicationFactor": 0}}},
    "a cluster key in broker.config": {"broker": {"config": {"etcd_lease_ttl_ms": 5000}}},
    "LoadBalancer external access without a host pattern": {"externalAccess": {"enabled": True}},
    "a host pattern without $(POD_NAME) or $(POD_INDEX)": {
        "externalAccess": {"enabled": True, "loadBalancer": {"hostPattern": "kafka.example.com"}}},
    "NodePort external access for 11 brokers": {
        **CLUSTER, "replicas": 11, "externalAccess": {"enabled": True, "type": "NodePort"}},
    "a node port prefix outside 30000-32767": {
        "externalAccess": {"enabled": True, "type": "NodePort", "nodePort": {"nodePortPrefix": 3300}}},
    "a negative Kafka port": {"broker": {"kafkaPort": -1}},
    "an HTTP port above 65535": {"broker": {"httpPort": 70000}},
    "secret credentials without a Secret name": {
        "archive": {"url": "s3://b/p", "credentials": {"source": "secret"}}},
    "an archive URL without a scheme": {"archive": {"url": "sediment-archive/prod"}},
    "an http:// archive URL": {"archive": {"url": "http://minio:9000/bucket"}},
    "s3:// without a bucket": {"archive": {"url": "s3:///prefix"}},
    "an unknown credentials source": {"archive": {"credentials": {"source": "vault"}}},
    "a key the chart sets itself in broker.config": {"broker": {"config": {"listen": "0.0.0.0:1"}}},
    "an unknown broker.config key": {"broker": {"config": {"retention_ms": 1}}},
    "an invalid flush policy": {"broker": {"config": {"flush": "sometimes"}}},
    "default_partitions above 10000": {"broker": {"config": {"default_partitions": 10001}}},
    "a cluster name with a space": {"broker": {"clusterName": "orders prod"}},
    "a volume size that is not a quantity": {"persistence": {"size": "lots"}},
    "an IAM role that is not an ARN": {"archive": {"workloadIdentity": {"awsRoleArn": "sediment"}}},
    "an unknown top-level value": {"zookeeper": {"connect": "zk:2181"}},
    "an image digest that is not sha256": {"image": {"digest": "latest"}},
    "a dashboard label value that is a number (grafana_dashboard: 1)": {
        "metrics": {"grafanaDashboard": {"enabled": True, "labels": {"grafana_dashboard": 1}}}},
    "a dashboard namespace that is not a DNS label": {
        "metrics": {"grafanaDashboard": {"enabled": True, "namespace": "Monitoring"}}},
    "tls.enabled without a Secret": {"tls": {"enabled": True}},
    "a TLS Secret name that is not a DNS name": {"tls": {"enabled": True, "secretName": "Sediment_TLS"}},
    "mutual TLS without tls.enabled": {"tls": {"clientCA": {"secretName": "clients-ca"}}},
    "an unknown SASL mechanism": {"sasl": {"enabled": True, "mechanisms": ["GSSAPI"]}},
    "no SASL mechanism": {"sasl": {"enabled": True, "mechanisms": []}},
    "a SASL mechanism listed twice": {"sasl": {"enabled": True, "mechanisms": ["PLAIN", "PLAIN"],
                                                "plainUsers": {"secretName": "users"}}},
    "PLAIN without a users Secret": {"sasl": {"enabled": True, "mechanisms": ["SCRAM-SHA-512", "PLAIN"]}},
    "a super user without a principal type": {"auth": {"superUsers": ["admin"]}},
    "auth.authorizer that is a string": {"auth": {"authorizer": "true"}},
    "a test user without a password Secret": {
        "sasl": {"enabled": True}, "tests": {"sasl": {"username": "helm-test"}}},
    "an unknown test SASL mechanism": {"tests": {"sasl": {"mechanism": "SCRAM-SHA-1"}}},
    "a metrics token Secret name that is not a DNS name": {"metrics": {"tokenSecretName": "Token"}},
    "an empty Secret key": {"metrics": {"tokenSecretName": "token", "tokenSecretKey": ""}},
    "an INTERNAL port above 65535": {"broker": {"internalPort": 70000}},
    "a runbook base URL that is not a URL": {"metrics": {"prometheusRule": {"runbookBaseUrl": "docs/operations.md"}}},
    "a runbook base URL with its own #anchor": {
        "metrics": {"prometheusRule": {"runbookBaseUrl": "https://example.com/operations.md#alerts"}}},
    "a consumer group lag threshold of 0 records": {
        "metrics": {"prometheusRule": {"consumerGroupLag": {"enabled": True, "records": 0}}}},
    "a consumer group lag duration without a unit": {
        "metrics": {"prometheusRule": {"consumerGroupLag": {"for": "15"}}}},
    "a slow request rate of 0": {"metrics": {"prometheusRule": {"slowRequestsPerSecond": 0}}},
}

# Values the schema allows but the templates refuse, with the message expected.
BAD_TEMPLATE = {
    "terminationGracePeriodSeconds not above shutdownTimeoutMs": (
        {"terminationGracePeriodSeconds": 10}, "must be above the 15 s a shutdown may take"),
    "terminationGracePeriodSeconds not above 1.5 x shutdownTimeoutMs in cluster mode": (
        {**CLUSTER, "terminationGracePeriodSeconds": 20}, "must be above the 23 s a shutdown may take"),
    "a test SASL mechanism the listener does not offer": (
        {"sasl": {"enabled": True, "mechanisms": ["SCRAM-SHA-512"]},
         "tests": {"sasl": {"mechanism": "PLAIN", "username": "t", "passwordSecretName": "t"}}},
        "tests.sasl.mechanism PLAIN is not one of sasl.mechanisms"),
    "User:ANONYMOUS as a super user": (
        {"auth": {"authorizer": True, "superUsers": ["User:ANONYMOUS"]}},
        "auth.superUsers: User:ANONYMOUS would make every unauthenticated client"),
    "the INTERNAL listener on the Kafka port": (
        {**CLUSTER, "sasl": {"enabled": True}, "broker": {"internalPort": 9092}},
        "broker.internalPort (9092) must differ from broker.kafkaPort and broker.httpPort"),
}

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def doc_table_keys(text, section):
    """First-column `keys` of the table under a markdown heading."""
    body = text.split(section, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_\[\]]+)` \|", body, re.M))


def main():
    out_dir = Path(sys.argv[1])
    kube_versions = sys.argv[2:]
    chart = helm.Chart.load(str(CHART))

    # Chart metadata: appVersion follows the broker's Cargo.toml.
    cargo_version = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    if chart.metadata.get("appVersion") != cargo_version:
        fail(f"Chart.yaml appVersion {chart.metadata.get('appVersion')} != Cargo.toml {cargo_version}")

    # helm lint --strict, for each Kubernetes version.
    for kube in kube_versions:
        report = helm.lint(str(CHART), strict=True, namespace=NAMESPACE, kube_version=f"v{kube}")
        bad = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        for m in report["messages"]:
            print(f"lint {kube}: severity {m['severity']} {m['path']}: {m['error']}")
        if bad:
            fail(f"helm lint --strict (Kubernetes {kube}): {bad}")
    print(f"ok   helm lint --strict for Kubernetes {', '.join(kube_versions)}")

    # Render each good value set.
    rendered, notes = {}, {}
    for name, values in GOOD.items():
        try:
            chart.validate_schema(values)
            files = chart.render(values, name="sediment", namespace=NAMESPACE, is_install=True)
        except helm.HelmError as e:
            fail(f"value set {name} does not render: {e}")
            continue
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        docs = []
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt"):
                notes[name] = text
                continue
            parsed = [d for d in yaml.safe_load_all(text) if d]
            if not parsed:
                continue
            (folder / Path(path).name).write_text(text.lstrip("\n"))
            docs.extend(parsed)
        rendered[name] = docs
        print(f"ok   render {name}: {len(docs)} objects -> {folder}")

    # Bad values are refused by the schema (at install, with a message).
    for why, values in BAD_SCHEMA.items():
        try:
            chart.validate_schema(values)
        except helm.HelmError as e:
            detail = "; ".join(line.strip("- ") for line in str(e).splitlines()[1:] if line)
            print(f"ok   refused: {why}: {detail[:200]}")
        else:
            fail(f"the schema accepts {why}: {values}")
    for why, (values, expected) in BAD_TEMPLATE.items():
        try:
            chart.render(values, name="sediment", namespace=NAMESPACE)
        except helm.HelmError as e:
            if expected not in str(e):
                fail(f"{why}: refused, but not with '{expected}': {e}")
            else:
                print(f"ok   refused: {why}")
        else:
            fail(f"the chart renders {why}: {values}")

    # The rendered TOML holds only keys the broker knows (the fields of
    # src/config.rs's Config, which refuses unknown ones), with TOML types.
    broker_keys = config_keys()
    schema = json.loads((CHART / "values.schema.json").read_text())
    schema_keys = set(schema["properties"]["broker"]["properties"]["config"]["properties"])
    chart_owned = {"data_dir", "listen", "advertise", "http_listen", "archive", "etcd",
                   "broker_id", "cluster", "shutdown_timeout_ms", "topic_defaults",
                   # broker.cluster.*
                   "etcd_lease_ttl_ms", "replica_lag_time_max_ms", "default_replication_factor",
                   "offsets_topic_partitions", "offsets_topic_replication_factor",
                   "transaction_state_partitions", "transaction_state_replication_factor",
                   # tls, sasl, auth, metrics.tokenSecretName
                   "listener", "auth", "inter_broker_listener", "http_token_file",
                   # The admin port's TLS: the chart's probes and ServiceMonitor
                   # speak HTTP, so it is not offered.
                   "http_tls_cert", "http_tls_key"}
    if broker_keys - chart_owned != schema_keys:
        fail("broker.config in values.schema.json and src/config.rs's keys differ: "
             f"only in src/config.rs {sorted(broker_keys - chart_owned - schema_keys)}, "
             f"only in the schema {sorted(schema_keys - broker_keys)}")
    for name, docs in rendered.items():
        files = broker_config_files(docs)
        if not files:
            fail(f"{name}: no broker TOML file rendered")
        values = GOOD[name]
        clustered = "etcd" in values
        secured = values.get("tls", {}).get("enabled") or values.get("sasl", {}).get("enabled")
        per_broker = bool(clustered and secured)
        wanted = ({f"broker-{i}.toml" for i in range(values.get("replicas", 1))} if per_broker
                  else {"sediment.toml"})
        if set(files) != wanted:
            fail(f"{name}: the ConfigMap holds {sorted(files)}, not {sorted(wanted)}")
        for key, text in files.items():
            toml = tomllib.loads(text)
            unknown = set(toml) - broker_keys
            if unknown:
                fail(f"{name}: {key} has keys the broker refuses: {unknown}")
            for k, value in toml.items():
                if isinstance(value, float):
                    fail(f"{name}: {key} {k} = {value} is a float")
            if name == "archive-secret" and toml.get("local_disk_budget_bytes") != 40 * 2**30:
                fail(f"{name}: local_disk_budget_bytes did not reach {key}: {toml}")
            if clustered != ("etcd_lease_ttl_ms" in toml):
                fail(f"{name}: the cluster keys are {'missing' if clustered else 'written'}: {toml}")
            check_listeners(name, key, toml, values)
    print("ok   broker TOML files: keys and types, listeners and [auth] as the values say, "
          "schema keys match src/config.rs")

    # Every broker container env name the chart sets is one the broker reads.
    design = (ROOT / "docs" / "configuration.md").read_text()
    for name, docs in rendered.items():
        for d in docs:
            if d["kind"] != "StatefulSet" or d["metadata"]["name"].endswith("-etcd"):
                continue
            pod = d["spec"]["template"]["spec"]
            env = {e["name"]: e for e in pod["containers"][0]["env"]}
            for key in env:
                if key.startswith("SEDIMENT_") and f"`{key}`" not in design:
                    fail(f"{name}: the StatefulSet sets {key}, which docs/configuration.md does not name")
            clustered = "etcd" in GOOD[name]
            shutdown_ms = GOOD[name].get("broker", {}).get("shutdownTimeoutMs", 15000)
            shutdown_s = -(-(shutdown_ms * 3 // 2 if clustered else shutdown_ms) // 1000)
            grace = pod["terminationGracePeriodSeconds"]
            if grace <= shutdown_s:
                fail(f"{name}: terminationGracePeriodSeconds {grace} <= shutdown {shutdown_s} s")
            if "$(POD_" not in env["SEDIMENT_ADVERTISE"].get("value", ""):
                fail(f"{name}: SEDIMENT_ADVERTISE is not per pod: {env['SEDIMENT_ADVERTISE']}")
            index = env["POD_INDEX"].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if index != "metadata.labels['apps.kubernetes.io/pod-index']" \
                    or env["SEDIMENT_BROKER_ID"].get("value") != "$(POD_INDEX)":
                fail(f"{name}: the broker id is not the pod's ordinal: {env['POD_INDEX']}, {env['SEDIMENT_BROKER_ID']}")
            if d["spec"]["replicas"] != GOOD[name].get("replicas", 1):
                fail(f"{name}: {d['spec']['replicas']} brokers rendered")
            if clustered != ("SEDIMENT_ETCD" in env):
                fail(f"{name}: SEDIMENT_ETCD is {'missing' if clustered else 'set'}")
    print("ok   SEDIMENT_* env names, per-pod advertised address and broker id, etcd, termination grace period")
    check_security_objects(rendered, notes)

    # The alert rules: promtool, their unit tests, their runbooks; their
    # metric names are checked by run_rendered_cluster against a live scrape.
    alert_metrics = check_alert_rules(rendered)

    # The Grafana dashboard: well formed, rendered where enabled; its
    # metric names are checked against the same live scrape.
    used_metrics = {"the alert rules use": alert_metrics,
                    "the Grafana dashboard uses": check_dashboards(rendered)}

    # Every value in values.yaml is listed in helm/sediment/README.md.
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", readme, re.M))

    def leaves(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and path not in (
                    "resources", "podSecurityContext", "securityContext",
                    "startupProbe", "readinessProbe", "livenessProbe", "etcd.bundled.resources"):
                yield from leaves(value, path + ".")
            else:
                yield path

    values_paths = set(leaves(chart.values))
    undocumented = sorted(values_paths - documented)
    if undocumented:
        fail(f"values missing from helm/sediment/README.md's tables: {undocumented}")
    stale = sorted(documented - values_paths)
    if stale:
        fail(f"helm/sediment/README.md lists values that do not exist: {stale}")
    if not undocumented and not stale:
        print(f"ok   helm/sediment/README.md lists exactly the {len(values_paths)} values of values.yaml")

    run_rendered_broker(rendered["archive-secret"], GOOD["archive-secret"])
    run_rendered_cluster(rendered["cluster-external-etcd-irsa"], GOOD["cluster-external-etcd-irsa"],
                         used_metrics)
    secrets = secured_run_secrets()
    if secrets:
        run_rendered_broker(rendered["mtls-single"], GOOD["mtls-single"], secrets)
        run_rendered_cluster(rendered["cluster-tls-sasl"], GOOD["cluster-tls-sasl"], used_metrics, secrets)
    check_scraped(used_metrics)
    run_rendered_etcd(rendered["cluster-bundled-etcd"])

    if failures:
        print(f"0 passed, {len(failures)} failed")
        sys.exit(1)


OPERATIONS = ROOT / "docs" / "operations.md"
RUNBOOK_SECTION = "## Alerts and runbooks"
ALERT_TESTS = ROOT / ".ci" / "alert-tests.yaml"
# The value set whose rules .ci/alert-tests.yaml tests (its selector labels
# and thresholds are the ones the tests' series carry).
ALERT_TEST_SET = "cluster-external-etcd-irsa"


def github_anchors(markdown):
    """The anchors GitHub gives a markdown file's headings: the text in
    lowercase, punctuation other than '-' and '_' dropped, spaces turned to
    '-', a repeated anchor suffixed -1, -2, ... Fenced code is skipped (a
    shell comment there is not a heading)."""
    anchors, seen, fenced = [], {}, False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else re.match(r"^#{1,6} +(.*?) *#*$", line)
        if not match:
            continue
        anchor = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.append(anchor if count == 0 else f"{anchor}-{count}")
    return anchors


def promtool(*args):
    """Runs promtool; returns (ok, output), or None when it is missing."""
    if shutil.which("promtool") is None:
        fail("promtool is missing (.ci/test.sh installs it from Debian's prometheus package)")
        return None
    proc = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def check_alert_rules(rendered):
    """The rendered PrometheusRules: promtool check rules accepts each set's
    groups; promtool test rules runs .ci/alert-tests.yaml on ALERT_TEST_SET's
    rules (annotations left out: the tests are about when alerts fire);
    every alert has a "### <AlertName>" runbook under "## Alerts and
    runbooks" in docs/operations.md, and nothing else is there; where
    metrics.prometheusRule.runbookBaseUrl is set, every alert's runbook_url
    is that URL with the anchor of its runbook heading. Returns the metric
    names the rules use."""
    already_failed = len(failures)
    operations = OPERATIONS.read_text()
    anchors = set(github_anchors(operations))
    if RUNBOOK_SECTION not in operations:
        fail(f"docs/operations.md has no '{RUNBOOK_SECTION}' section")
        runbooks = set()
    else:
        section = operations.split(RUNBOOK_SECTION, 1)[1].split("\n## ", 1)[0]
        runbooks = set(re.findall(r"^### (\w+)$", section, re.M))
    alert_metrics, alerts = set(), set()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name, docs in rendered.items():
            rules = [d for d in docs if d["kind"] == "PrometheusRule"]
            wanted = GOOD[name].get("metrics", {}).get("prometheusRule", {})
            if len(rules) != (1 if wanted.get("enabled") else 0):
                fail(f"{name}: {len(rules)} PrometheusRules rendered, enabled={wanted.get('enabled', False)}")
                continue
            for d in rules:
                groups = d["spec"]["groups"]
                base = wanted.get("runbookBaseUrl", "")
                for group in groups:
                    for rule in group["rules"]:
                        alert = rule["alert"]
                        alerts.add(alert)
                        alert_metrics |= set(re.findall(r"\b(sediment_[a-z0-9_]+)", rule["expr"]))
                        url = rule.get("annotations", {}).get("runbook_url")
                        if not base:
                            if url is not None:
                                fail(f"{name}: {alert} has runbook_url {url} without runbookBaseUrl")
                        elif url != f"{base}#{alert.lower()}":
                            fail(f"{name}: {alert}'s runbook_url is {url}, not {base}#{alert.lower()}")
                        elif url.split("#", 1)[1] not in anchors:
                            fail(f"{name}: {alert}'s runbook_url points to #{url.split('#', 1)[1]}, "
                                 "which is no heading of docs/operations.md")
                        if not rule.get("annotations", {}).get("summary"):
                            fail(f"{name}: {alert} has no summary")
                rules_file = scratch / f"{name}.yaml"
                rules_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
                result = promtool("check", "rules", str(rules_file))
                if result is None:
                    return alert_metrics
                if not result[0]:
                    fail(f"{name}: promtool check rules: {result[1]}")
                if name == ALERT_TEST_SET:
                    bare = [{**group, "rules": [{k: v for k, v in rule.items() if k != "annotations"}
                                                for rule in group["rules"]]} for group in groups]
                    (scratch / "alert-rules.yaml").write_text(yaml.safe_dump({"groups": bare}, sort_keys=False))
        tests = yaml.safe_load(ALERT_TESTS.read_text())
        if tests.get("rule_files") != ["alert-rules.yaml"]:
            fail(f"{ALERT_TESTS.name}: rule_files must be [alert-rules.yaml] (the rendered rules)")
        shutil.copy(ALERT_TESTS, scratch / "alert-tests.yaml")
        result = promtool("test", "rules", str(scratch / "alert-tests.yaml"))
        if result is not None and not result[0]:
            fail(f"promtool test rules {ALERT_TESTS.name}: {result[1]}")
        tested = {t["alertname"] for case in tests.get("tests", []) for t in case.get("alert_rule_test", [])}
    for needed in ("SedimentUnderReplicatedPartitions", "SedimentOfflinePartitions",
                   "SedimentTieringStalled", "SedimentSlowRequests"):
        if needed not in tested:
            fail(f"{ALERT_TESTS.name} does not test {needed}")
    if not alerts:
        fail("no PrometheusRule was rendered")
    for needed in ("sediment_under_replicated_partitions", "sediment_etcd_session_up"):
        if needed not in alert_metrics:
            fail(f"no alert uses {needed}")
    if alerts - runbooks:
        fail(f"alerts without a runbook (### <AlertName> under '{RUNBOOK_SECTION}'): {sorted(alerts - runbooks)}")
    if runbooks - alerts:
        fail(f"runbooks of alerts no value set renders: {sorted(runbooks - alerts)}")
    if len(failures) == already_failed:
        print(f"ok   alert rules: {len(alerts)} alerts, promtool check rules for each set, "
              f"promtool test rules {ALERT_TESTS.name} ({len(tested)} alerts tested), "
              "a runbook for each, runbook_url anchors in docs/operations.md")
    return alert_metrics


def config_keys():
    """The keys of the broker's TOML file: the fields of src/config.rs's
    Config, under their serde names (`listeners` is `listener`)."""
    source = (ROOT / "src" / "config.rs").read_text()
    body = source.split("pub struct Config {", 1)[1].split("\n}", 1)[0]
    keys = set()
    for rename, field in re.findall(r'^(?:    #\[serde\(rename = "(\w+)"\)\]\n)?    pub (\w+):', body, re.M):
        keys.add(rename or field)
    return keys


def check_security_objects(rendered, notes):
    """What tls, sasl, auth and metrics.tokenSecretName add beyond the TOML
    files: each Secret mounted read-only where the files point, the
    per-broker config file, the INTERNAL port (container, NetworkPolicy
    from the brokers only), the ServiceMonitor's bearer token, the helm test
    pod's client settings or its absence, and NOTES.txt saying how to
    connect."""
    for name, docs in rendered.items():
        values = GOOD[name]
        tls, sasl = values.get("tls", {}), values.get("sasl", {})
        protocol = {(False, False): "PLAINTEXT", (True, False): "SSL", (False, True): "SASL_PLAINTEXT",
                    (True, True): "SASL_SSL"}[(bool(tls.get("enabled")), bool(sasl.get("enabled")))]
        internal = protocol != "PLAINTEXT" and "etcd" in values
        sts = next(d for d in docs if d["kind"] == "StatefulSet" and not d["metadata"]["name"].endswith("-etcd"))
        pod = sts["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        secrets = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        wanted = {}
        if tls.get("enabled"):
            wanted["tls"] = (tls["secretName"], "/etc/sediment-tls", {"tls.crt", "tls.key"})
            if tls.get("clientCA", {}).get("secretName"):
                wanted["tls-client-ca"] = (tls["clientCA"]["secretName"], "/etc/sediment-client-ca", {"ca.crt"})
        if sasl.get("enabled") and "PLAIN" in sasl.get("mechanisms", []):
            wanted["plain-users"] = (sasl["plainUsers"]["secretName"], "/etc/sediment-plain-users", {"users.toml"})
        token = values.get("metrics", {}).get("tokenSecretName")
        if token:
            wanted["metrics-token"] = (token, "/etc/sediment-metrics-token", {"token"})
        got = {}
        for volume, secret in secrets.items():
            mount = mounts.get(volume, {})
            if not mount.get("readOnly"):
                fail(f"{name}: the Secret volume {volume} is not mounted read-only: {mount}")
            if secret.get("defaultMode") != 0o440:
                fail(f"{name}: the Secret volume {volume} has mode {secret.get('defaultMode')}, not 0440")
            got[volume] = (secret["secretName"], mount.get("mountPath"), {i["path"] for i in secret.get("items", [])})
        if got != wanted:
            fail(f"{name}: Secret volumes {got}, wanted {wanted}")
        config = "/etc/sediment/broker-$(POD_INDEX).toml" if internal else "/etc/sediment/sediment.toml"
        if env.get("SEDIMENT_CONFIG") != config:
            fail(f"{name}: SEDIMENT_CONFIG is {env.get('SEDIMENT_CONFIG')}, not {config}")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if internal != ("internal" in ports):
            fail(f"{name}: the container's ports are {ports}")
        for d in docs:
            if d["kind"] == "NetworkPolicy":
                rules = [r for r in d["spec"]["ingress"] if r["ports"][0]["port"] == "internal"]
                brokers_only = [{"podSelector": {"matchLabels": sts["spec"]["selector"]["matchLabels"]}}]
                if internal and (len(rules) != 1 or rules[0].get("from") != brokers_only):
                    fail(f"{name}: the NetworkPolicy does not keep the internal port to the brokers: {rules}")
                if not internal and rules:
                    fail(f"{name}: the NetworkPolicy has an internal port rule without the INTERNAL listener")
            if d["kind"] == "ServiceMonitor":
                bearer = d["spec"]["endpoints"][0].get("bearerTokenSecret")
                if bearer != ({"name": token, "key": values["metrics"].get("tokenSecretKey", "token")}
                              if token else None):
                    fail(f"{name}: the ServiceMonitor's bearerTokenSecret is {bearer}")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if container[probe]["httpGet"]["path"] not in ("/healthz", "/readyz"):
                fail(f"{name}: {probe} is not on /healthz or /readyz: {container[probe]}")
        test = [d for d in docs if d["kind"] == "Pod"]
        skipped = ((sasl.get("enabled") and not values.get("tests", {}).get("sasl", {}).get("username"))
                   or (tls.get("clientCA", {}).get("secretName")
                       and not values.get("tests", {}).get("tls", {}).get("clientSecretName")))
        if bool(test) == bool(skipped):
            fail(f"{name}: {len(test)} helm test pods rendered, skipped={bool(skipped)}")
        if skipped and "No `helm test` pod" not in notes[name]:
            fail(f"{name}: NOTES.txt does not say why there is no helm test pod")
        if test:
            script = test[0]["spec"]["containers"][0]["args"][0]
            if (protocol == "PLAINTEXT") != ("security.protocol" not in script) or (
                    protocol != "PLAINTEXT" and f"-X security.protocol={protocol}" not in script):
                fail(f"{name}: the helm test script's client settings do not match {protocol}")
        if protocol != "PLAINTEXT" and f"security.protocol={protocol}" not in notes[name]:
            fail(f"{name}: NOTES.txt does not give the client settings of {protocol}")
        if protocol == "PLAINTEXT" and "security.protocol" in notes[name]:
            fail(f"{name}: NOTES.txt gives client security settings on a PLAINTEXT set")
        if values.get("auth", {}).get("authorizer") and "etcd" in values and \
                "--operation ClusterAction --cluster" not in notes[name]:
            fail(f"{name}: NOTES.txt does not give the brokers' CLUSTER_ACTION ACL")
    print("ok   security: Secrets mounted read-only (0440) where the TOML points, per-broker files and "
          "the INTERNAL port with the NetworkPolicy, ServiceMonitor token, helm test settings, NOTES.txt")


def broker_config_files(docs):
    """The broker's TOML files: the ConfigMap's *.toml keys (sediment.toml,
    or broker-N.toml with the INTERNAL listener)."""
    for d in docs:
        if d["kind"] == "ConfigMap" and any(k.endswith(".toml") for k in d.get("data", {})):
            return {k: v for k, v in d["data"].items() if k.endswith(".toml")}
    return {}


def check_listeners(name, key, toml, values):
    """The listeners, inter_broker_listener and [auth] of one rendered TOML
    file against the values: PLAINTEXT sets have none of them; a secured
    Kafka port is the first listener, CLIENT, with the protocol, files and
    mechanisms the values ask for; in cluster mode the INTERNAL listener
    (PLAINTEXT) advertises this broker's own headless name."""
    tls, sasl, auth = values.get("tls", {}), values.get("sasl", {}), values.get("auth", {})
    protocol = {(False, False): "PLAINTEXT", (True, False): "SSL", (False, True): "SASL_PLAINTEXT",
                (True, True): "SASL_SSL"}[(bool(tls.get("enabled")), bool(sasl.get("enabled")))]
    listeners = toml.get("listener", [])
    if protocol == "PLAINTEXT":
        if listeners or "inter_broker_listener" in toml:
            fail(f"{name}: {key} has listeners on a PLAINTEXT set: {listeners}")
    else:
        client = listeners[0] if listeners else {}
        if client.get("name") != "CLIENT" or client.get("protocol") != protocol:
            fail(f"{name}: {key}'s first listener is {client}, not CLIENT {protocol}")
        if tls.get("enabled") and (client.get("tls_cert"), client.get("tls_key")) != (
                "/etc/sediment-tls/tls.crt", "/etc/sediment-tls/tls.key"):
            fail(f"{name}: {key}'s CLIENT listener names {client.get('tls_cert')}, {client.get('tls_key')}")
        if bool(tls.get("clientCA", {}).get("secretName")) != ("tls_client_ca" in client):
            fail(f"{name}: {key}'s CLIENT listener tls_client_ca does not follow tls.clientCA")
        if sasl.get("enabled") and client.get("sasl_mechanisms") != sasl.get(
                "mechanisms", ["SCRAM-SHA-256", "SCRAM-SHA-512"]):
            fail(f"{name}: {key}'s CLIENT listener offers {client.get('sasl_mechanisms')}")
        if "etcd" in values:
            match = re.fullmatch(r"broker-(\d+)\.toml", key)
            own = f"sediment-{match.group(1) if match else '?'}.sediment-headless.{NAMESPACE}.svc.cluster.local"
            internal = listeners[1] if len(listeners) > 1 else {}
            port = values.get("broker", {}).get("internalPort", 9094)
            if toml.get("inter_broker_listener") != "INTERNAL" or internal != {
                    "name": "INTERNAL", "listen": f"0.0.0.0:{port}", "advertise": f"{own}:{port}",
                    "protocol": "PLAINTEXT"}:
                fail(f"{name}: {key}: inter_broker_listener {toml.get('inter_broker_listener')}, "
                     f"INTERNAL listener {internal}")
    wanted_auth = bool(sasl.get("enabled") or auth.get("authorizer") or auth.get("superUsers"))
    if wanted_auth != ("auth" in toml):
        fail(f"{name}: {key} {'lacks' if wanted_auth else 'has'} an [auth] table")
    a = toml.get("auth", {})
    if a and (a.get("authorizer") != auth.get("authorizer", False)
              or a.get("super_users") != auth.get("superUsers", [])):
        fail(f"{name}: {key}'s [auth] {a} does not follow the values {auth}")
    if ("PLAIN" in sasl.get("mechanisms", []) and sasl.get("enabled")) != ("plain_users_file" in a):
        fail(f"{name}: {key}'s plain_users_file does not follow PLAIN in sasl.mechanisms")
    if bool(values.get("metrics", {}).get("tokenSecretName")) != ("http_token_file" in toml):
        fail(f"{name}: {key}'s http_token_file does not follow metrics.tokenSecretName")


def broker_binary():
    if os.environ.get("SEDIMENT_BIN"):
        binary = Path(os.environ["SEDIMENT_BIN"])
        if not binary.is_file():
            fail(f"SEDIMENT_BIN={binary} is not a file (being rebuilt? retry in a minute)")
            return None
        return binary
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    for profile in ("debug", "release"):
        if (target / profile / "sediment").is_file():
            return target / profile / "sediment"
    return None


def free_port():
    """A free port below Linux's ephemeral range (32768-60999): a port the
    kernel picked for us (bind to 0) comes from that range, and an outgoing
    connection (etcd members dialling each other) can take it before the
    process meant to listen on it binds it."""
    while True:
        port = random.randint(20000, 32000)
        if port in HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            HANDED_OUT.add(port)
            return port


# Ports free_port returned, not all bound yet: never handed out twice.
HANDED_OUT = set()


def run_rendered_broker(docs, values, secrets=None):
    """Starts the binary as the rendered StatefulSet would, on loopback.

    Only paths and addresses differ from the pod: the ConfigMap's, the data
    volume's and each Secret volume's mount paths become scratch folders
    (the Secrets' files written as the kubelet writes them, see
    mount_secrets), the listen and advertised addresses loopback ports, and
    the archive a folder (the Secret's credentials are not here). With TLS,
    the rendered helm test pod's script then runs with the local kcat
    against it, and with mutual TLS a client without a certificate must be
    refused."""
    binary = broker_binary()
    if binary is None:
        print("skip run of the rendered broker: no binary (set SEDIMENT_BIN or build first)")
        return
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    config = broker_config_files(docs)
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    tls = values.get("tls", {})
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        kafka, http = free_port(), free_port()
        listen_ip = values.get("broker", {}).get("listenAddress", "0.0.0.0")
        paths = {mounts["config"]: str(scratch / "config"), mounts["data"]: str(scratch / "data"),
                 **mount_secrets(pod, container, secrets or {}, scratch / "secrets")}
        addresses = {f"{listen_ip}:{values.get('broker', {}).get('kafkaPort', 9092)}": f"127.0.0.1:{kafka}"}
        (scratch / "config").mkdir()
        for key, text in config.items():
            (scratch / "config" / key).write_text(substitute(text, {**paths, **addresses}))
        env = pod_env(container, "sediment-0", 0, sts["metadata"]["namespace"])
        env = {name: substitute(value, paths) for name, value in env.items()}
        # Only the addresses and the store differ from the pod: loopback
        # ports instead of the pod's, a folder instead of the bucket (whose
        # credentials, from the Secret, are not here).
        env["SEDIMENT_LISTEN"] = f"127.0.0.1:{kafka}"
        env["SEDIMENT_HTTP_LISTEN"] = f"127.0.0.1:{http}"
        advertised_host = env["SEDIMENT_ADVERTISE"].rsplit(":", 1)[0]
        env["SEDIMENT_ADVERTISE"] = f"127.0.0.1:{kafka}"
        env["SEDIMENT_ARCHIVE"] = f"file://{scratch}/archive"
        grace = pod["terminationGracePeriodSeconds"]
        log = open(scratch / "broker.log", "w+")
        proc = subprocess.Popen([str(binary), *container["args"]], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            ready = False
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2) as r:
                        ready = r.status == 200
                except OSError:
                    pass
                if ready:
                    break
                time.sleep(0.2)
            if not ready:
                fail(f"the rendered broker did not become ready (exit {proc.poll()})")
                return
            what = ""
            if tls.get("enabled"):
                ca = scratch / "ca.pem"
                ca.write_text(secrets["sediment-ca"]["ca.crt"])
                if tls.get("clientCA", {}).get("secretName"):
                    if not client_without_certificate_refused(f"127.0.0.1:{kafka}", ca):
                        return
                    what += ", a client without a certificate refused"
                if not run_rendered_test(docs, f"127.0.0.1:{kafka}", secrets, scratch / "test"):
                    return
                what += ", the rendered helm test (kcat) produced and consumed over mutual TLS"
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                fail(f"the rendered broker did not stop within {grace} s of SIGTERM")
                return
            if code != 0:
                fail(f"the rendered broker exited {code} after SIGTERM")
                return
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.seek(0)
            output = log.read()
            log.close()
            if failures:
                print(output[-3000:])
    print(f"ok   {binary} ran with the rendered env and {', '.join(sorted(config))} "
          f"(pod advertises {advertised_host}): ready{what}, then SIGTERM -> exit 0")


# --- Secrets, certificates and the helm test, for the secured runs -------

def make_certificates(folder):
    """A CA and certificates it signs, with the openssl CLI (EC P-256):
    the brokers' (for the names clients reach them at, as NOTES.txt asks,
    plus 127.0.0.1 where the local runs put them), a second one for the
    rotation check, and a client certificate for mutual TLS. Returns
    {name: (certificate PEM, key PEM)}."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)
    run("req", "-x509", "-new", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/O=Example/CN=chart-run CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    names = ("DNS:*.sediment-headless.streaming.svc.cluster.local,"
             "DNS:sediment.streaming.svc.cluster.local,DNS:localhost,IP:127.0.0.1")
    certs = {"ca": ((folder / "ca.crt").read_text(), (folder / "ca.key").read_text())}
    for name, subject, ext in (
            ("server", "/CN=sediment", f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n"),
            ("server-renewed", "/CN=sediment", f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n"),
            ("admin", "/O=Example/CN=sediment-admin", "extendedKeyUsage=clientAuth\n")):
        (folder / f"{name}.ext").write_text("basicConstraints=CA:FALSE\n"
                                            "keyUsage=critical,digitalSignature\n" + ext)
        run("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
            "-extfile", f"{name}.ext", "-out", f"{name}.crt")
        certs[name] = ((folder / f"{name}.crt").read_text(), (folder / f"{name}.key").read_text())
    return certs


def secured_run_secrets():
    """The Secrets for the secured runs, with certificates made here; None
    (and a failure) when openssl is missing, None when no binary is."""
    if broker_binary() is None:
        print("skip the secured runs: no binary (set SEDIMENT_BIN or build first)")
        return None
    if shutil.which("openssl") is None:
        fail("the secured runs need the openssl CLI to make certificates")
        return None
    folder = Path(tempfile.mkdtemp(prefix="chart-run-certs-"))
    try:
        certs = make_certificates(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    secrets = chart_run_secrets(certs)
    secrets["__renewed"] = certs["server-renewed"]
    return secrets


def chart_run_secrets(certs):
    """The Secrets the secured value sets name, as the cluster would hold
    them ({name: {key: text}}): what `kubectl create secret` (or
    cert-manager) would have made."""
    ca = certs["ca"][0]
    return {
        "sediment-tls": {"tls.crt": certs["server"][0], "tls.key": certs["server"][1], "ca.crt": ca},
        "sediment-ca": {"ca.crt": ca},
        "sediment-client-ca": {"ca.pem": ca},
        "sediment-admin-cert": {"tls.crt": certs["admin"][0], "tls.key": certs["admin"][1]},
        "sediment-plain-users": {"users.toml": '[users]\nadmin = "admin-secret-1"\n'},
        "sediment-metrics-token": {"token": "chart-run-metrics-token-" + os.urandom(8).hex()},
        "sediment-helm-test": {"password": "helm-test-secret-1"},
    }


def mount_secrets(pod, container, secrets, folder):
    """Writes each Secret volume the container mounts as the kubelet does:
    the items (key -> path) in a timestamped folder, `..data` a symlink to
    it, each file a symlink through `..data`, the files with the volume's
    defaultMode. Returns {mount path: local folder}. A rotation
    (rotate_secret) swaps `..data` atomically, as the kubelet does."""
    volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
    mapping = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes.get(mount["name"])
        if secret is None:
            continue
        data = secrets.get(secret["secretName"])
        if data is None:
            raise ValueError(f"the local run has no Secret {secret['secretName']}")
        items = secret.get("items") or [{"key": k, "path": k} for k in data]
        files = {}
        for item in items:
            if item["key"] not in data:
                raise ValueError(f"Secret {secret['secretName']} has no key {item['key']}")
            files[item["path"]] = data[item["key"]]
        target = folder / mount["name"]
        write_secret_volume(target, files, secret.get("defaultMode", 0o644))
        mapping[mount["mountPath"]] = str(target)
    return mapping


def write_secret_volume(target, files, mode):
    target.mkdir(parents=True, exist_ok=True)
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{os.urandom(4).hex()}"
    stamp.mkdir()
    for path, text in files.items():
        (stamp / path).write_text(text)
        (stamp / path).chmod(mode)
    tmp = target / "..data_tmp"
    tmp.symlink_to(stamp.name)
    tmp.rename(target / "..data")
    for path in files:
        if not (target / path).is_symlink():
            (target / path).symlink_to(f"..data/{path}")


def client_without_certificate_refused(address, ca):
    """A TLS client that trusts the CA but presents no certificate must not
    get an answer to ApiVersions."""
    import ssl
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca)
    request = struct.pack(">hhih", 18, 0, 1, 4) + b"test"
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(struct.pack(">i", len(request)) + request)
                answer = s.recv(4)
    except (ssl.SSLError, ConnectionError, OSError):
        answer = b""
    if answer:
        fail(f"{address} answered a TLS client without a certificate: {answer!r}")
        return False
    return True


def run_rendered_test(docs, bootstrap, secrets, folder):
    """Runs the rendered helm test pod's script with the local /bin/sh and
    kcat (Debian's 1.7.1, the image's version): its Secret volumes written as
    in mount_secrets, its mount paths and the client Service's address
    substituted, nothing else. It must exit 0 with `produced X, consumed X`."""
    if shutil.which("kcat") is None:
        fail("the helm test run needs kcat (Debian: apt-get install kcat)")
        return False
    pod = next((d for d in docs if d["kind"] == "Pod"), None)
    if pod is None:
        fail("no helm test pod rendered")
        return False
    spec = pod["spec"]
    container = spec["containers"][0]
    if container["command"] != ["/bin/sh", "-ec"]:
        fail(f"the helm test container's command is {container['command']}")
        return False
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "sediment")
    port = service["spec"]["ports"][0]["port"]
    address = f"sediment.{service['metadata']['namespace']}.svc.cluster.local:{port}"
    paths = mount_secrets(spec, container, secrets, folder)
    script = substitute(container["args"][0], {address: bootstrap, **paths})
    if ".svc." in script:
        fail(f"the helm test script still names in-cluster addresses: {script}")
        return False
    result = subprocess.run(["/bin/sh", "-ec", script], capture_output=True, text=True, timeout=180)
    produced = re.search(r"^produced (\S+), consumed (\S*)$", result.stdout, re.M)
    if result.returncode != 0 or not produced or produced.group(1) != produced.group(2):
        fail(f"the rendered helm test script failed (exit {result.returncode}):\n"
             f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        return False
    return True


# --- The 3-broker chart as local processes -------------------------------

def wait_for(what, seconds, probe):
    """Polls probe() until it returns a true value; returns it, or None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (OSError, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    fail(f"{what}: not within {seconds} s")
    return None


def http_get(url, timeout=3, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return r.status, r.read().decode()


def http_status(url, headers=None):
    """The status code, also for 4xx and 5xx answers."""
    try:
        return http_get(url, headers=headers)[0]
    except urllib.error.HTTPError as e:
        return e.code


def expand(value, env):
    """Kubernetes' $(VAR) expansion: earlier variables of the container,
    $$ for a literal $, unknown references left as they are."""
    return re.sub(r"\$\$|\$\((\w+)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def substitute(value, addresses):
    """Replaces each exact in-cluster string (host:port, mount path) of
    `addresses` with its local stand-in, the longest first (/etc/sediment
    must not eat the start of /etc/sediment-tls)."""
    for old in sorted(addresses, key=len, reverse=True):
        value = value.replace(old, addresses[old])
    return value


def pod_field(path, pod_name, ordinal, namespace):
    """The downward-API fields the chart uses, as the kubelet fills them."""
    fields = {
        "metadata.name": pod_name,
        "metadata.namespace": namespace,
        "metadata.labels['apps.kubernetes.io/pod-index']": str(ordinal),
        # One machine: the pod's and the node's IP are loopback.
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path not in fields:
        raise ValueError(f"the local run does not know the downward-API field {path}")
    return fields[path]


def pod_env(container, pod_name, ordinal, namespace):
    """The container's environment as the kubelet builds it, plus PATH."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
        else:
            ref = var["valueFrom"].get("fieldRef")
            if ref is None:
                raise ValueError(f"the local run cannot fill {var}")
            env[var["name"]] = pod_field(ref["fieldPath"], pod_name, ordinal, namespace)
    return env


def start_etcd_members(scratch, count):
    """A real etcd cluster of `count` members on loopback (TEST-INFRA.md)."""
    members = [(f"n{i}", free_port(), free_port()) for i in range(count)]
    initial = ",".join(f"{n}=http://127.0.0.1:{pp}" for n, _, pp in members)
    procs = []
    for name, cp, pp in members:
        data = scratch / f"etcd-{name}"
        procs.append(subprocess.Popen(
            ["etcd", "--name", name, "--data-dir", str(data),
             f"--listen-client-urls=http://127.0.0.1:{cp}", f"--advertise-client-urls=http://127.0.0.1:{cp}",
             f"--listen-peer-urls=http://127.0.0.1:{pp}", f"--initial-advertise-peer-urls=http://127.0.0.1:{pp}",
             f"--initial-cluster={initial}", "--initial-cluster-token=chart-run",
             "--initial-cluster-state", "new", "--heartbeat-interval=50", "--election-timeout=500",
             "--logger", "zap", "--log-outputs", str(data) + ".log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs, [f"http://127.0.0.1:{cp}" for _, cp, _ in members]


def start_s3(scratch, bucket):
    """moto's S3 server (MOTO_SERVER, set by deploy-checks.sh) with `bucket`.
    It does not check signatures: any key pair does."""
    port = free_port()
    log = open(scratch / "moto.log", "w")
    proc = subprocess.Popen([os.environ["MOTO_SERVER"], "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"

    def make_bucket():
        request = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
        with urllib.request.urlopen(request, timeout=3) as r:
            return r.status == 200
    wait_for("the S3 test server answers", 30, make_bucket)
    return proc, endpoint


def stop(proc, timeout):
    """SIGTERM, then the exit code, or None after `timeout` (then SIGKILL)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def metric_names(text):
    """The series names Prometheus stores from a scrape, which queries can
    use: every sample's name, and for a family with no series yet the names
    its samples will have (a counter's <family>_total, a histogram's
    _bucket, _sum and _count, a gauge's family name). The bare family name
    of a counter or histogram is not one: a query on it finds nothing."""
    names = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M))
    series = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)", text, re.M):
        names |= {family + suffix for suffix in series.get(kind, ("",))}
    return names


DASHBOARD = CHART / "dashboards" / "sediment.json"


def dashboard_metrics(dashboard):
    """Every sediment_* name in a dashboard's queries: each panel's target
    expressions (panels inside collapsed rows too) and the template
    variables' queries. Histogram names keep their _bucket/_sum/_count
    suffix, which metric_names gives the scrape too."""
    exprs = [t.get("expr", "") for panel in iter_panels(dashboard.get("panels", []))
             for t in panel.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query", "")
        exprs.append(query.get("query", "") if isinstance(query, dict) else str(query))
    return {name for e in exprs for name in re.findall(r"\b(sediment_[a-z0-9_]+)", e)}


def check_dashboards(rendered):
    """The dashboard ConfigMap is rendered exactly where it is enabled, holds
    dashboards/sediment.json, and the dashboard is one Grafana's sidecar can
    load as it is: a data source variable instead of import-time __inputs,
    every query on it, and namespace and pod variables. Returns the metric
    names its queries use, for the live scrape."""
    source = DASHBOARD.read_text()
    dashboard = json.loads(source)
    for name, docs in rendered.items():
        maps = [d for d in docs if d["kind"] == "ConfigMap"
                and d["metadata"].get("labels", {}).get("grafana_dashboard")]
        wanted = GOOD[name].get("metrics", {}).get("grafanaDashboard", {})
        if len(maps) != (1 if wanted.get("enabled") else 0):
            fail(f"{name}: {len(maps)} dashboard ConfigMaps rendered, enabled={wanted.get('enabled', False)}")
            continue
        for d in maps:
            if d["data"] != {"sediment.json": source.strip()}:
                fail(f"{name}: the dashboard ConfigMap does not hold dashboards/sediment.json as it is")
            if d["metadata"]["namespace"] != (wanted.get("namespace") or NAMESPACE):
                fail(f"{name}: the dashboard ConfigMap is in namespace {d['metadata']['namespace']}")
            if d["metadata"]["labels"]["grafana_dashboard"] != "1":
                fail(f"{name}: the dashboard ConfigMap is labelled {d['metadata']['labels']}")

    if "__inputs" in dashboard:
        fail("the dashboard has __inputs: the sidecar loads it as is, nothing fills them")
    if dashboard.get("schemaVersion", 0) < 39:
        fail(f"the dashboard's schemaVersion {dashboard.get('schemaVersion')} is old (39: Grafana 10.4/11)")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    source_var = variables.get("datasource", {})
    if source_var.get("type") != "datasource" or source_var.get("query") != "prometheus":
        fail(f"the dashboard has no prometheus data source variable: {source_var}")
    if "namespace" not in variables or not ({"pod", "instance"} & set(variables)):
        fail(f"the dashboard has no namespace and pod (or instance) variables: {sorted(variables)}")
    panels = list(iter_panels(dashboard["panels"]))
    ids = [panel.get("id") for panel in panels]
    if len(ids) != len(set(ids)) or None in ids:
        fail(f"the dashboard's panel ids are missing or repeated: {ids}")
    for panel in panels:
        if panel["type"] == "row":
            continue
        where = f"dashboard panel {panel.get('title')!r}"
        if not panel.get("description"):
            fail(f"{where} has no description")
        if not panel.get("targets"):
            fail(f"{where} has no query")
        for thing in [panel, *panel.get("targets", [])]:
            if thing.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
                fail(f"{where}: data source {thing.get('datasource')}, not the variable")
        for target in panel.get("targets", []):
            if "$namespace" not in target.get("expr", ""):
                fail(f"{where}: {target.get('expr')!r} ignores the namespace variable")

    names = dashboard_metrics(dashboard)
    for needed in ("sediment_under_replicated_partitions", "sediment_offline_partitions",
                   "sediment_etcd_session_up", "sediment_produce_bytes_total",
                   "sediment_request_duration_seconds_bucket", "sediment_fsync_duration_seconds_bucket",
                   "sediment_tiering_backlog_bytes", "sediment_consumer_group_lag_records",
                   "sediment_slow_requests_total", "sediment_quota_throttled_responses_total",
                   "sediment_quota_throttle_seconds_total", "sediment_transactions_open",
                   "sediment_transactions_timed_out_total", "sediment_cleaner_errors_total",
                   "sediment_fetch_sessions", "sediment_authentication_failures_total",
                   "sediment_authorization_denials_total", "sediment_controller",
                   "sediment_coordination_writes_total", "sediment_log_size_bytes",
                   "sediment_archive_cache_hits_total", "sediment_tiering_last_upload_timestamp_seconds"):
        if needed not in names:
            fail(f"the dashboard does not show {needed}")
    # The extraction finds a name in a panel of a collapsed row too, so a
    # dashboard naming a metric the broker does not export fails the scrape.
    probe = {**dashboard, "panels": [{"type": "row", "collapsed": True, "panels": [
        {"type": "timeseries", "targets": [{"expr": "rate(sediment_fetch_records_total[5m])"}]}]}]}
    if "sediment_fetch_records_total" not in dashboard_metrics(probe):
        fail("dashboard_metrics misses a query inside a collapsed row")

    # Grafana's schema: the dashboard must pass, and the check must catch a
    # real violation (a number where the schema wants a string, a legend
    # placement it does not list, a key it does not name).
    schema_errors = grafana_schema_errors(dashboard)
    for error in schema_errors:
        fail(f"the dashboard does not fit Grafana's schema: {error}")
    broken = json.loads(source)
    first = next(p for p in iter_panels(broken["panels"]) if p["type"] == "timeseries")
    first["fieldConfig"]["defaults"]["unit"] = 5
    first["options"]["legend"]["placement"] = "middle"
    first["gridpos"] = first.pop("gridPos")
    caught = grafana_schema_errors(broken)
    if len(caught) != 3:
        fail(f"the Grafana schema check misses violations: {caught}")

    rows = sum(1 for panel in panels if panel["type"] == "row")
    sdk = importlib.metadata.version("grafana-foundation-sdk")
    print(f"ok   Grafana dashboard: fits Grafana's schema (grafana-foundation-sdk {sdk}), {len(panels) - rows} panels in {rows} rows, {len(names)} metric names, "
          "a data source variable, rendered where enabled")
    return names


# Keys Grafana itself writes into a dashboard that the schema of
# grafana-foundation-sdk does not name: a template variable's `definition`
# is the query as the variable editor shows it.
SCHEMA_UNNAMED_KEYS = {("templating", "list", "definition")}


def grafana_schema_errors(dashboard):
    """The dashboard checked against Grafana's dashboard schema, offline:
    grafana-foundation-sdk's Python models are generated from the schema
    Grafana publishes (the CUE kinds: the dashboard, each core panel's
    options and field config, each data source's query). The SDK decodes
    without checking (from_json copies values and drops unknown keys), so
    this checks what it decoded against the models' type annotations:
    strings, numbers, booleans, enums and literals (a legend placement, a
    draw style, a variable's refresh), nested objects, lists; and a
    round trip through to_json finds every key the schema does not name (a
    misspelt gridPos, a query's exp). Returns the errors, each with its
    JSON path."""
    import enum
    import types
    import typing
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()
    errors = []

    def is_model(value):
        return callable(getattr(type(value), "to_json", None)) and \
            callable(getattr(type(value), "from_json", None)) and not isinstance(value, type)

    def json_name(attribute):
        # The models' attribute names: snake_case, with _val after names
        # Python reserves (type_val, id_val, list_val).
        words = attribute.removesuffix("_val").split("_")
        return words[0] + "".join(w.capitalize() for w in words[1:])

    def walk(obj, path):
        if type(obj).__name__ == "UnknownDataquery":
            errors.append(f"{path}: a query for a data source type the schema does not know")
            return
        module = sys.modules[type(obj).__module__]
        for attribute, hint in typing.get_type_hints(type(obj), vars(module)).items():
            if hasattr(obj, attribute):
                check(getattr(obj, attribute), hint, f"{path}.{json_name(attribute)}", module)

    def check(value, hint, path, module, report=True):
        """True when value fits hint; reports why not when report."""
        def no(why):
            if report:
                errors.append(f"{path}: {why}")
            return False
        hint = resolve(hint, module)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint in (typing.Any, object):
            return walk_fits(value, path, report) if is_model(value) else True
        if origin in (typing.Union, types.UnionType):
            options = [a for a in args if a is not type(None)]
            if value is None:
                return type(None) in args or no("null")
            if len(options) == 1:
                return check(value, options[0], path, module, report)
            for option in map(lambda o: resolve(o, module), options):
                # A model decoded as one of the union's types is checked as that.
                if isinstance(option, type) and is_model(value) and isinstance(value, option):
                    return check(value, option, path, module, report)
            for option in options:
                if check(value, option, path, module, report=False):
                    return check(value, option, path, module, report)
            return no(f"{json.dumps(value, cls=JSONEncoder)[:80]} fits none of {hint}")
        if origin is typing.Literal:
            return value in args or no(f"{value!r} is not one of {list(args)}")
        if origin is list:
            if not isinstance(value, list):
                return no(f"{type(value).__name__}, not a list")
            return all([check(v, args[0], f"{path}[{i}]", module, report) for i, v in enumerate(value)])
        if origin is dict:
            if not isinstance(value, dict):
                return no(f"{type(value).__name__}, not an object")
            return all([check(v, args[1], f"{path}.{k}", module, report) for k, v in value.items()])
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            if value in {m.value for m in hint} and not isinstance(value, bool):
                return True
            return no(f"{value!r} is not one of {[m.value for m in hint]}")
        if hint is bool:
            return isinstance(value, bool) or no(f"{value!r} is not a boolean")
        if hint in (int, float):
            if isinstance(value, bool) or not isinstance(value, int if hint is int else (int, float)):
                return no(f"{value!r} is not {'an integer' if hint is int else 'a number'}")
            return True
        if hint is str:
            return isinstance(value, str) or no(f"{value!r} is not a string")
        if isinstance(hint, type):
            if not isinstance(value, hint):
                return no(f"{type(value).__name__}, not {hint.__name__}")
            return walk_fits(value, path, report) if is_model(value) else True
        return no(f"a type this check does not know: {hint}")

    def resolve(hint, module):
        if isinstance(hint, typing.ForwardRef):
            return eval(hint.__forward_arg__, vars(module))
        return eval(hint, vars(module)) if isinstance(hint, str) else hint

    def walk_fits(obj, path, report):
        before = len(errors)
        walk(obj, path)
        ok = len(errors) == before
        if not report:
            del errors[before:]
        return ok

    def dropped(original, back, path, keys):
        if isinstance(original, dict) and isinstance(back, dict):
            for key, value in original.items():
                where = (*keys, key)
                if key not in back:
                    if where[-3:] not in SCHEMA_UNNAMED_KEYS:
                        errors.append(f"{path}.{key}: a key the schema does not name")
                else:
                    dropped(value, back[key], f"{path}.{key}", (*keys, key))
        elif isinstance(original, list) and isinstance(back, list):
            for i, (a, b) in enumerate(zip(original, back)):
                dropped(a, b, f"{path}[{i}]", keys)

    try:
        model = Dashboard.from_json(dashboard)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        return [f"the SDK cannot decode it: {type(e).__name__} {e}"]
    walk(model, "dashboard")
    dropped(dashboard, json.loads(json.dumps(model, cls=JSONEncoder)), "dashboard", ())
    return errors


def iter_panels(panels):
    """Every panel, rows included, with the panels of collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def run_rendered_cluster(docs, values, used_metrics, secrets=None):
    """Runs the rendered 3-broker StatefulSet as three local processes.

    What comes from the rendering, untouched: the command (the image's
    entrypoint, `sediment`, when the chart sets none), the args, every env
    variable with its $(VAR) references expanded as the kubelet does, the
    downward-API fields (pod name, ordinal), the TOML file from the
    ConfigMap (each broker's own broker-N.toml with the INTERNAL listener),
    the archive URL (s3://...), the cluster name, the Secrets' files at the
    paths the TOML names.

    What is substituted, because three pods become three processes on one
    machine, and nothing else:
    - paths: the ConfigMap's, the data volume's and each Secret volume's
      mount paths become scratch folders (one data dir and one config dir
      per broker; the Secrets as mount_secrets writes them, from `secrets`);
    - addresses, as exact host:port strings, in the env, the args and the
      TOML files: each pod's advertised name
      <pod>.<headless>.<namespace>.svc.<domain>:<kafka port> (and :<internal
      port>) becomes 127.0.0.1:<a free port of its own>; the listen
      addresses <listenAddress>:<kafka port>, :<http port> and :<internal
      port> become 127.0.0.1 on that broker's ports; each external etcd
      endpoint becomes a member of a real 3-member etcd on loopback. Every
      in-cluster name must be mapped: a leftover ".svc." or 0.0.0.0 fails
      the run;
    - the cloud: IRSA's webhook would add a web identity to the pod; here
      the S3 test server's endpoint and a static key pair stand in
      (AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, AWS_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY), as the cloud's S3 would through IRSA.
    """
    binary = broker_binary()
    if binary is None:
        print("skip run of the rendered cluster: no binary (set SEDIMENT_BIN or build first)")
        return
    if shutil.which("etcd") is None:
        fail("the cluster run needs the etcd binary (Debian: apt-get install etcd-server)")
        return
    if not os.environ.get("MOTO_SERVER"):
        fail("the cluster run needs MOTO_SERVER (an S3 test server; deploy-checks.sh installs it)")
        return
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    sts = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "sediment")
    config = broker_config_files(docs)
    headless = next(d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None")
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    replicas = sts["spec"]["replicas"]
    namespace = sts["metadata"]["namespace"]
    grace = pod["terminationGracePeriodSeconds"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    listen_ip = values.get("broker", {}).get("listenAddress", "0.0.0.0")
    domain = values.get("clusterDomain", "cluster.local")
    command = container.get("command") or []
    if command not in ([], ["sediment"]):
        fail(f"the broker container's command {command} is not the image's entrypoint")
        return
    if container.get("envFrom"):
        fail(f"the IRSA set should need no Secret: envFrom {container['envFrom']}")
        return

    procs, logs = [], []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        try:
            etcd_procs, etcd_urls = start_etcd_members(scratch, 3)
            procs += etcd_procs
            for url in etcd_urls:
                wait_for(f"etcd {url} is healthy", 30,
                         lambda: '"health":"true"' in http_get(f"{url}/health")[1])
            bucket = values["archive"]["url"].split("/")[2]
            s3_proc, s3_endpoint = start_s3(scratch, bucket)
            procs.append(s3_proc)
            secret_paths = mount_secrets(pod, container, secrets or {}, scratch / "secrets")

            kafka_ports = [free_port() for _ in range(replicas)]
            http_ports = [free_port() for _ in range(replicas)]
            internal_ports = [free_port() for _ in range(replicas)]
            advertised = {}
            for i in range(replicas):
                name = f"{sts['metadata']['name']}-{i}"
                host = f"{name}.{headless['metadata']['name']}.{namespace}.svc.{domain}"
                advertised[f"{host}:{ports['kafka']}"] = f"127.0.0.1:{kafka_ports[i]}"
                if "internal" in ports:
                    advertised[f"{host}:{ports['internal']}"] = f"127.0.0.1:{internal_ports[i]}"
            etcd_map = dict(zip(values["etcd"]["external"]["endpoints"], etcd_urls))

            brokers = []
            for i in range(replicas):
                pod_name = f"{sts['metadata']['name']}-{i}"
                env = pod_env(container, pod_name, i, namespace)
                args = [expand(a, env) for a in container["args"]]
                addresses = {
                    **advertised,
                    **etcd_map,
                    **secret_paths,
                    f"{listen_ip}:{ports['kafka']}": f"127.0.0.1:{kafka_ports[i]}",
                    f"{listen_ip}:{ports['http']}": f"127.0.0.1:{http_ports[i]}",
                    mounts["config"]: str(scratch / f"config-{i}"),
                    mounts["data"]: str(scratch / f"data-{i}"),
                }
                if "internal" in ports:
                    addresses[f"{listen_ip}:{ports['internal']}"] = f"127.0.0.1:{internal_ports[i]}"
                env = {k: substitute(v, addresses) for k, v in env.items()}
                args = [substitute(a, addresses) for a in args]
                (scratch / f"config-{i}").mkdir()
                for key, text in config.items():
                    (scratch / f"config-{i}" / key).write_text(substitute(text, addresses))
                left = [f"{k}={v}" for k, v in env.items() if ".svc." in v or "0.0.0.0" in v]
                left += [a for a in args if ".svc." in a]
                own_config = Path(env["SEDIMENT_CONFIG"])
                if not own_config.is_file():
                    fail(f"{pod_name}: SEDIMENT_CONFIG={env['SEDIMENT_CONFIG']} is not a rendered file")
                    return
                left += [f"{own_config.name}: {line}" for line in own_config.read_text().splitlines()
                         if ".svc." in line or "0.0.0.0" in line]
                if left:
                    fail(f"{pod_name}: in-cluster addresses the local run did not map: {left}")
                    return
                if env.get("SEDIMENT_BROKER_ID") != str(i):
                    fail(f"{pod_name}: SEDIMENT_BROKER_ID is {env.get('SEDIMENT_BROKER_ID')!r}, not {i}")
                env.update({"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ALLOW_HTTP": "true",
                            "AWS_ACCESS_KEY_ID": "chart-run", "AWS_SECRET_ACCESS_KEY": "chart-run"})
                log = open(scratch / f"{pod_name}.log", "w+")
                logs.append((pod_name, log))
                proc = subprocess.Popen([str(binary), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
                procs.append(proc)
                brokers.append({"name": pod_name, "proc": proc, "env": env, "log": log,
                                "http": f"http://127.0.0.1:{http_ports[i]}",
                                "kafka": f"127.0.0.1:{kafka_ports[i]}",
                                "internal": f"127.0.0.1:{internal_ports[i]}" if "internal" in ports else None})
            print(f"     started {replicas} brokers as rendered ({binary.name} {' '.join(args)}; "
                  f"SEDIMENT_ETCD={brokers[0]['env']['SEDIMENT_ETCD']}; "
                  f"SEDIMENT_ARCHIVE={brokers[0]['env']['SEDIMENT_ARCHIVE']}; "
                  f"SEDIMENT_CONFIG={Path(brokers[0]['env']['SEDIMENT_CONFIG']).name})")
            if secrets:
                check_secure_cluster(brokers, docs, values, secrets, secret_paths, grace, scratch)
            else:
                check_cluster(brokers, values, used_metrics, grace, KafkaAdminClient, KafkaConsumer,
                              KafkaProducer, NewTopic)
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if failures:
                for name, log in logs:
                    log.seek(0)
                    print(f"---- {name} (last lines)\n{log.read()[-2500:]}")
            for _, log in logs:
                log.close()


# Every series name the live /metrics scrapes of the rendered clusters held
# (the plain run and the TLS/SASL one).
SCRAPED = set()


def labelled_families():
    """The series names of the labelled families src/metrics.rs registers
    (Family<Labels, Counter|Gauge|Histogram>): prometheus-client writes such
    a family only once it has a series, so a scrape shows it only after the
    event it counts."""
    source = (ROOT / "src" / "metrics.rs").read_text()
    kinds = dict(re.findall(r"pub (\w+): Family<\w+, (Counter|Gauge|Histogram)", source))
    suffixes = {"Counter": ("_total",), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for name, field in re.findall(r'registry\.register\(\s*"(\w+)",\s*"(?:[^"\\]|\\.)*",\s*m\.(\w+)\.clone\(\)',
                                  source):
        if field in kinds:
            names |= {f"sediment_{name}{suffix}" for suffix in suffixes[kinds[field]]}
    return names


def check_scraped(used_metrics):
    """The metric names the alert rules and the dashboard use, against the
    live scrapes: each must be a series the brokers exported. A labelled
    family whose event the runs did not cause (a slow request, a throttled
    client) has no series to scrape; such a name passes when src/metrics.rs
    registers that family, and is listed."""
    if not SCRAPED:
        return
    families = labelled_families()
    for what, names in used_metrics.items():
        missing = names - SCRAPED
        unknown = sorted(missing - families)
        if unknown:
            fail(f"metrics {what} that no broker exports (live /metrics scrape): {unknown}")
        else:
            note = (f"; without series in these runs, registered in src/metrics.rs: {sorted(missing)}"
                    if missing else "")
            print(f"ok   the {len(names)} metric names {what} are in the live /metrics scrapes{note}")


def check_cluster(brokers, values, used_metrics, grace, KafkaAdminClient, KafkaConsumer,
                  KafkaProducer, NewTopic):
    for b in brokers:
        if not wait_for(f"{b['name']} /readyz", 90,
                        lambda: b["proc"].poll() is None and http_get(b["http"] + "/readyz")[0] == 200):
            print(f"     {b['name']} exit code: {b['proc'].poll()}")
            return
    expected = {i: b["kafka"] for i, b in enumerate(brokers)}

    def cluster_view():
        view = json.loads(http_get(brokers[0]["http"] + "/v1/cluster")[1])
        return view if {b["id"]: b["address"] for b in view["brokers"]} == expected else None
    view = wait_for("/v1/cluster lists the 3 brokers at their advertised addresses", 30, cluster_view)
    if not view:
        return
    if view.get("mode") != "etcd" or view.get("cluster") != values["broker"]["clusterName"]:
        fail(f"/v1/cluster: mode {view.get('mode')}, cluster {view.get('cluster')}")
    print(f"ok   /v1/cluster: brokers {sorted(expected)}, controller {view['controller']}")

    bootstrap = [b["kafka"] for b in brokers]
    topic, count = "chart-run", 300
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    # Replication factor -1: the chart's default_replication_factor (3).
    admin.create_topics([NewTopic(topic, 3, -1)])
    admin.close()

    def replicated():
        view = json.loads(http_get(brokers[0]["http"] + "/v1/cluster")[1])
        parts = [p for p in view["partitions"] if p["topic"] == topic]
        full = len(parts) == 3 and all(len(p["replicas"]) == 3 and sorted(p["isr"]) == [0, 1, 2] for p in parts)
        return parts if full else None
    parts = wait_for(f"{topic}: 3 partitions, each with 3 replicas all in the ISR", 60, replicated)
    if not parts:
        return
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    sent = {f"record-{i}".encode() for i in range(count)}
    futures = [producer.send(topic, value=v) for v in sorted(sent)]
    producer.flush()
    for f in futures:
        f.get(timeout=60)
    producer.close()

    def consume(group, through):
        consumer = KafkaConsumer(topic, bootstrap_servers=through, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 fetch_max_wait_ms=200)
        got, deadline = set(), time.monotonic() + 60
        while got != sent and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                got |= {r.value for r in records}
        consumer.commit()
        consumer.close()
        return got
    got = consume("chart-run", bootstrap)
    if got != sent:
        fail(f"consumed {len(got)} of {count} records through the rendered cluster")
        return
    print(f"ok   produced {count} records (acks=all, replication factor 3) and consumed them with a group")

    provoke_errors(brokers[0]["kafka"], topic)
    scraped = set()
    for b in brokers:
        scraped |= metric_names(http_get(b["http"] + "/metrics")[1])
    # Compared with what the alert rules and the dashboard use once the
    # secured cluster has been scraped too (check_scraped).
    SCRAPED.update(scraped)
    # The comparison tells a name that is not a series from one that is: a
    # counter's family name without _total, a histogram's without _bucket,
    # a plausible metric the broker does not have.
    for bogus in ("sediment_requests", "sediment_fsync_duration_seconds", "sediment_fetch_records_total"):
        if bogus in scraped:
            fail(f"metric_names counts {bogus} as exported: the metric name checks prove nothing")

    # A controlled shutdown of the broker that leads partition 0, as the
    # kubelet does it: SIGTERM, then the grace period. Everything stays
    # readable through the other two.
    leader = next(p["leader"] for p in parts if p["partition"] == 0)
    code = stop(brokers[leader]["proc"], grace)
    if code != 0:
        fail(f"{brokers[leader]['name']} (leader of {topic}/0): exit {code} after SIGTERM "
             f"(grace {grace} s)")
        return
    rest = [b["kafka"] for i, b in enumerate(brokers) if i != leader]
    got = consume("chart-run-after-stop", rest)
    if got != sent:
        fail(f"after stopping broker {leader}: consumed {len(got)} of {count} records through the others")
        return
    print(f"ok   SIGTERM to broker {leader} (leader of {topic}/0): exit 0 within {grace} s; "
          f"all {count} records read through brokers {[i for i in range(3) if i != leader]}")
    for i, b in enumerate(brokers):
        if i != leader:
            code = stop(b["proc"], grace)
            if code != 0:
                fail(f"{b['name']}: exit {code} after SIGTERM (grace {grace} s)")
    print(f"ok   the rendered 3-broker cluster ran: {brokers[0]['name']}..{brokers[-1]['name']} "
          "stopped cleanly")


def check_secure_cluster(brokers, docs, values, secrets, secret_paths, grace, scratch):
    """The TLS+SASL cluster: probes open, /metrics and /v1 behind the token,
    a PLAIN super user (from the users file) who creates the brokers'
    CLUSTER_ACTION ACL, SCRAM users and their ACLs, replication through the
    INTERNAL listener to full ISRs, produce and consume over SASL_SSL with
    SCRAM-SHA-512, refusals (plain text on the TLS port, a wrong password,
    a user without ACLs), the rendered helm test script, a certificate
    rotation through the Secret volume, and a clean stop."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import (ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, NewTopic,
                             ResourcePattern, ResourceType, ScramMechanism, UserScramCredentialUpsertion)
    import kafka.errors

    for b in brokers:
        # /readyz answers without the token: the kubelet's probes have none.
        if not wait_for(f"{b['name']} /readyz", 90,
                        lambda: b["proc"].poll() is None and http_get(b["http"] + "/readyz")[0] == 200):
            print(f"     {b['name']} exit code: {b['proc'].poll()}")
            return
    token = secrets[values["metrics"]["tokenSecretName"]]["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    for path in ("/metrics", "/v1/cluster"):
        if http_status(brokers[0]["http"] + path) != 401:
            fail(f"{path} answered without the bearer token")
            return
    expected = {i: b["kafka"] for i, b in enumerate(brokers)}

    def cluster_view():
        view = json.loads(http_get(brokers[0]["http"] + "/v1/cluster", headers=bearer)[1])
        return view if {b["id"]: b["address"] for b in view["brokers"]} == expected else None
    if not wait_for("/v1/cluster (with the token) lists the 3 brokers at their client addresses", 30,
                    cluster_view):
        return
    print("ok   /healthz and /readyz open, /metrics and /v1/cluster 401 without the token and 200 with it")

    ca = scratch / "ca.pem"
    ca.write_text(secrets[values["tests"]["tls"]["caSecretName"]]["ca.crt"])
    bootstrap = [b["kafka"] for b in brokers]
    users = tomllib.loads(secrets[values["sasl"]["plainUsers"]["secretName"]]["users.toml"])["users"]

    def client(user, password, mechanism):
        return {"bootstrap_servers": bootstrap, "security_protocol": "SASL_SSL", "ssl_cafile": str(ca),
                "sasl_mechanism": mechanism, "sasl_plain_username": user, "sasl_plain_password": password}

    # Refusals first: plain text on the TLS port, a wrong password.
    host, port = brokers[0]["kafka"].rsplit(":", 1)
    request = struct.pack(">hhih", 18, 0, 1, 4) + b"test"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(request)) + request)
        try:
            answer = s.recv(16)
        except ConnectionError:
            answer = b""
    if answer and answer[0] != 0x15:  # nothing, or a TLS alert record
        fail(f"the SASL_SSL port answered a plain-text ApiVersions: {answer!r}")
        return
    # kcat says why it is refused (kafka-python only times out bootstrapping).
    wrong = subprocess.run(
        ["kcat", "-b", brokers[0]["kafka"], "-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={ca}",
         "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=admin", "-X", "sasl.password=wrong-password",
         "-L", "-m", "3"], capture_output=True, text=True, timeout=60)
    if wrong.returncode == 0 or "invalid credentials" not in wrong.stderr:
        fail(f"a wrong PLAIN password: kcat exit {wrong.returncode}, {wrong.stderr[-500:]}")
        return
    print("ok   the Kafka port refuses plain text, and a wrong password with SASL_AUTHENTICATION_FAILED")

    admin = KafkaAdminClient(**client("admin", users["admin"], "PLAIN"))
    topic, count, group = "chart-run", 300, "chart-run"
    test_topic = values["tests"].get("topic", "sediment-helm-test")
    test_user = values["tests"]["sasl"]["username"]

    def allow(principal, operation, kind, name, pattern=ACLResourcePatternType.LITERAL):
        return ACL(principal, "*", operation, ACLPermissionType.ALLOW, ResourcePattern(kind, name, pattern))
    acls = [
        # What NOTES.txt tells the operator to create: followers fetch as
        # User:ANONYMOUS on the INTERNAL listener.
        allow("User:ANONYMOUS", ACLOperation.CLUSTER_ACTION, ResourceType.CLUSTER, "kafka-cluster"),
        allow("User:alice", ACLOperation.WRITE, ResourceType.TOPIC, topic),
        allow("User:alice", ACLOperation.READ, ResourceType.TOPIC, topic),
        allow("User:alice", ACLOperation.READ, ResourceType.GROUP, group, ACLResourcePatternType.PREFIXED),
        # The helm test user: WRITE, READ (and so DESCRIBE) and CREATE on its topic.
        allow(f"User:{test_user}", ACLOperation.WRITE, ResourceType.TOPIC, test_topic),
        allow(f"User:{test_user}", ACLOperation.READ, ResourceType.TOPIC, test_topic),
        allow(f"User:{test_user}", ACLOperation.CREATE, ResourceType.TOPIC, test_topic),
    ]
    created = admin.create_acls(acls)
    if created.get("failed"):
        fail(f"creating ACLs as the PLAIN super user: {created['failed']}")
        return
    passwords = {"alice": "alice-secret-1", "mallory": "mallory-secret-1",
                 test_user: secrets[values["tests"]["sasl"]["passwordSecretName"]]["password"]}
    errors = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, ScramMechanism.SCRAM_SHA_512, password, iterations=8192)
         for user, password in passwords.items()])
    if any(errors.values()):
        fail(f"creating SCRAM users as the PLAIN super user: {errors}")
        return
    admin.create_topics([NewTopic(topic, 3, -1)])
    admin.close()
    print(f"ok   the PLAIN super user (users file) created {len(acls)} ACLs, among them User:ANONYMOUS "
          f"CLUSTER_ACTION, and SCRAM-SHA-512 users {sorted(passwords)}")

    def replicated():
        view = json.loads(http_get(brokers[0]["http"] + "/v1/cluster", headers=bearer)[1])
        parts = [p for p in view["partitions"] if p["topic"] == topic]
        full = len(parts) == 3 and all(len(p["replicas"]) == 3 and sorted(p["isr"]) == [0, 1, 2] for p in parts)
        return parts if full else None
    if not wait_for(f"{topic}: 3 partitions, each with 3 replicas all in the ISR", 60, replicated):
        return
    # The followers fetch from the leaders' INTERNAL listener, never from
    # the clients' port. A new topic's ISR is full from the start, so the
    # followers' fetchers may log that they follow a moment after it.
    internal = {b["internal"] for b in brokers}

    def followed_addresses():
        found = set()
        for b in brokers:
            b["log"].flush()
            text = re.sub(r"\x1b\[[0-9;]*m", "", Path(b["log"].name).read_text())
            found |= set(re.findall(r"following partitions .*?address=(\S+)", text))
        return found
    followed = wait_for("followers fetching", 30, followed_addresses) or set()
    if not followed or not followed <= internal:
        fail(f"the followers fetched from {sorted(followed)}, not only the INTERNAL listeners {sorted(internal)}")
        return
    print(f"ok   {topic}: 3 replicas of each partition in the ISR, replicated through the INTERNAL "
          f"listeners only ({len(followed)} of them followed)")

    alice = client("alice", passwords["alice"], "SCRAM-SHA-512")
    producer = KafkaProducer(**alice, acks="all", linger_ms=5)
    sent = {f"record-{i}".encode() for i in range(count)}
    futures = [producer.send(topic, value=v) for v in sorted(sent)]
    producer.flush()
    for f in futures:
        f.get(timeout=60)
    producer.close()
    consumer = KafkaConsumer(topic, **alice, group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False, fetch_max_wait_ms=200)
    got, deadline = set(), time.monotonic() + 60
    while got != sent and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got |= {r.value for r in records}
    consumer.commit()
    consumer.close()
    if got != sent:
        fail(f"consumed {len(got)} of {count} records as alice over SASL_SSL")
        return
    print(f"ok   alice (SCRAM-SHA-512 over SASL_SSL) produced {count} records (acks=all) and "
          "consumed them with a group")

    # Authenticated is not authorized: mallory has no ACL.
    mallory = client("mallory", passwords["mallory"], "SCRAM-SHA-512")
    refused = []
    producer = KafkaProducer(**mallory, max_block_ms=15000)
    try:
        producer.send(topic, value=b"mallory").get(timeout=15)
    except kafka.errors.TopicAuthorizationFailedError:
        refused.append("produce: TOPIC_AUTHORIZATION_FAILED")
    finally:
        producer.close()
    consumer = KafkaConsumer(**mallory, group_id="mallory", auto_offset_reset="earliest")
    try:
        consumer.subscribe([topic])
        consumer.poll(timeout_ms=10000)
    except kafka.errors.GroupAuthorizationFailedError:
        refused.append("consume: GROUP_AUTHORIZATION_FAILED")
    finally:
        consumer.close()
    if len(refused) != 2:
        fail(f"mallory (authenticated, no ACL) was refused only: {refused}")
        return
    print(f"ok   mallory (authenticated, no ACL) is refused: {', '.join(refused)}")

    if not run_rendered_test(docs, brokers[0]["kafka"], secrets, scratch / "test"):
        return
    print(f"ok   the rendered helm test script (kcat, SASL_SSL SCRAM-SHA-512 as {test_user}) produced "
          "and consumed")

    # A renewed certificate, as cert-manager and the kubelet deliver it:
    # the Secret volume's ..data swapped atomically. New connections get it.
    import ssl
    renewed = secrets["__renewed"]
    tls_dir = Path(secret_paths["/etc/sediment-tls"])
    write_secret_volume(tls_dir, {"tls.crt": renewed[0], "tls.key": renewed[1]}, 0o440)
    wanted = ssl.PEM_cert_to_DER_cert(renewed[0])

    def served():
        context = ssl.create_default_context(cafile=str(ca))
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as s:
                return s.getpeercert(binary_form=True) == wanted
    if not wait_for("the renewed certificate is served", 15, served):
        return
    reloads = re.search(r"^sediment_tls_certificate_reloads_total(?:\{[^}]*\})? (\S+)$",
                        http_get(brokers[0]["http"] + "/metrics", headers=bearer)[1], re.M)
    if not reloads or float(reloads.group(1)) < 1:
        fail(f"sediment_tls_certificate_reloads_total after a rotation: {reloads and reloads.group(0)}")
        return
    print("ok   a certificate renewed in the Secret volume is served to new connections without a restart "
          f"({reloads.group(0)})")

    # Its scrape holds what the plain cluster has no series of: successful
    # and failed authentications, authorization denials.
    for b in brokers:
        SCRAPED.update(metric_names(http_get(b["http"] + "/metrics", headers=bearer)[1]))

    codes = [stop(b["proc"], grace) for b in brokers]
    if codes != [0] * len(brokers):
        fail(f"the secured brokers exited {codes} after SIGTERM (grace {grace} s)")
        return
    print(f"ok   the rendered TLS+SASL 3-broker cluster ran: {brokers[0]['name']}..{brokers[-1]['name']} "
          "stopped cleanly")


def provoke_errors(address, topic):
    """One produce error and one protocol error, raw on the Kafka port: the
    error counters have labels (api, kind), so their series appear in
    /metrics only with the first error. A Produce v3 to a partition that
    does not exist (answered UNKNOWN_TOPIC_OR_PARTITION), then a frame with
    a negative length (the connection is closed, kind frame_size)."""
    host, port = address.rsplit(":", 1)
    name = topic.encode()
    body = (struct.pack(">hhi", -1, 1, 5000)          # no transactional id, acks=1, timeout
            + struct.pack(">ih", 1, len(name)) + name   # one topic
            + struct.pack(">iii", 1, 99, -1))          # one partition, 99, null records
    header = struct.pack(">hhih", 0, 3, 7, len(b"deploy-checks")) + b"deploy-checks"
    try:
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
            response = read_exactly(s, struct.unpack(">i", read_exactly(s, 4))[0])
        # correlation id, topics (1), name, partitions (1), index, error code
        offset = 4 + 4 + 2 + len(name) + 4 + 4
        code = struct.unpack(">h", response[offset:offset + 2])[0]
        if code != 3:
            fail(f"a produce to {topic}/99 was answered with error code {code}, "
                 "not 3 (UNKNOWN_TOPIC_OR_PARTITION)")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(struct.pack(">i", -1))
            if s.recv(1) != b"":
                fail("a frame of length -1 did not close the connection")
    except OSError as e:
        fail(f"provoking a produce and a protocol error on {address}: {e}")


def read_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def run_rendered_etcd(docs):
    """Runs the bundled etcd's rendered members as local processes.

    Each member's command and args as rendered, with $(POD_NAME) filled in,
    run by the local etcd binary (Debian's 3.4; the image is 3.5, which
    takes the same flags). As in run_rendered_cluster, only addresses and
    paths are substituted: each member's <pod>.<service>...:<port> and its
    listen addresses become 127.0.0.1 on ports of its own, its volume's mount
    path a scratch folder. Then every member must answer its rendered
    startup, readiness and liveness probes, and the members must form one
    cluster."""
    if shutil.which("etcd") is None:
        fail("the bundled etcd run needs the etcd binary (Debian: apt-get install etcd-server)")
        return
    sts = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"].endswith("-etcd"))
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    if container["command"] != ["/usr/local/bin/etcd"]:
        fail(f"the etcd container's command is {container['command']}")
        return
    name, namespace = sts["metadata"]["name"], sts["metadata"]["namespace"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    mount = container["volumeMounts"][0]["mountPath"]
    members = sts["spec"]["replicas"]
    local_ports = [{k: free_port() for k in ports} for _ in range(members)]
    procs = []
    with tempfile.TemporaryDirectory() as scratch:
        try:
            for i in range(members):
                pod_name = f"{name}-{i}"
                env = pod_env(container, pod_name, i, namespace)
                addresses = {}
                for j in range(members):
                    host = f"{name}-{j}.{name}.{namespace}.svc.cluster.local"
                    for port_name, port in ports.items():
                        addresses[f"{host}:{port}"] = f"127.0.0.1:{local_ports[j][port_name]}"
                for port_name, port in ports.items():
                    addresses[f"0.0.0.0:{port}"] = f"127.0.0.1:{local_ports[i][port_name]}"
                addresses[mount] = f"{scratch}/{pod_name}"
                args = [substitute(expand(a, env), addresses) for a in container["args"]]
                left = [a for a in args if ".svc." in a or "0.0.0.0" in a]
                if left:
                    fail(f"{pod_name}: in-cluster addresses the local run did not map: {left}")
                    return
                procs.append(subprocess.Popen(["etcd", *args], stdout=subprocess.DEVNULL,
                                              stderr=open(f"{scratch}/{pod_name}.log", "w")))
            for i in range(members):
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    get = container[probe]["httpGet"]
                    url = f"http://127.0.0.1:{local_ports[i][get['port']]}{get['path']}"
                    if not wait_for(f"{name}-{i} {probe} {get['path']}", 30,
                                    lambda: procs[i].poll() is None and http_get(url)[0] == 200):
                        print(Path(f"{scratch}/{name}-{i}.log").read_text()[-2000:])
                        return
            url = f"http://127.0.0.1:{local_ports[0]['client']}/v3/cluster/member/list"
            request = urllib.request.Request(url, data=b"{}", method="POST")
            with urllib.request.urlopen(request, timeout=5) as r:
                listed = json.loads(r.read())["members"]
            if len(listed) != members:
                fail(f"the bundled etcd formed {len(listed)} members, not {members}: {listed}")
                return
            # etcd cleans up at SIGTERM, then ends itself by the same signal.
            codes = [stop(p, pod["terminationGracePeriodSeconds"]) for p in procs]
            if any(code not in (0, -signal.SIGTERM) for code in codes):
                fail(f"the bundled etcd members exited {codes} after SIGTERM")
                return
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    print(f"ok   the bundled etcd ran as rendered: {members} members formed one cluster, "
          "answered their startup, readiness and liveness probes, and stopped on SIGTERM")


if __name__ == "__main__":
    main()
