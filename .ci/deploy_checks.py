"""Offline checks of helm/sediment, run by .ci/deploy-checks.sh.

Lints the chart, renders it for several value sets into OUT_DIR (one folder
per set, one file per template, for kubernetes-validate, yamllint and
checkov to read), and checks what no generic tool can: bad values are
refused, the rendered TOML is a file the broker accepts, the alerts use only
metrics the broker exports, every value is documented in docs/deploy.md.

When a broker binary is at hand (SEDIMENT_BIN, or the debug or release
build under CARGO_TARGET_DIR or target/), it also starts that binary with
the broker container's environment and TOML file exactly as rendered, on
loopback ports and a scratch data dir, waits for /readyz, sends SIGTERM and
expects exit 0 within the rendered terminationGracePeriodSeconds. A chart
whose variables or config keys the binary refuses fails there.

Usage: python deploy_checks.py OUT_DIR KUBE_VERSION...
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "sediment"
NAMESPACE = "streaming"

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
    "gke-ipv6": {
        "archive": {
            "url": "gs://sediment-archive/prod",
            "workloadIdentity": {"gcpServiceAccount": "sediment@my-project.iam.gserviceaccount.com"},
        },
        "broker": {"listenAddress": "::", "kafkaPort": 19092, "httpPort": 19644},
        "fullnameOverride": "kafka",
        "terminationGracePeriodSeconds": 60,
    },
}

# Values that must be refused by values.schema.json, with why.
BAD_SCHEMA = {
    "replicas: 3 (cluster mode is not built)": {"replicas": 3},
    "replicas: 0": {"replicas": 0},
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
    "an unknown top-level value": {"etcd": {"endpoints": ["http://etcd:2379"]}},
    "an image digest that is not sha256": {"image": {"digest": "latest"}},
}

# Values the schema allows but the templates refuse, with the message expected.
BAD_TEMPLATE = {
    "terminationGracePeriodSeconds not above shutdownTimeoutMs": (
        {"terminationGracePeriodSeconds": 10}, "must be above broker.shutdownTimeoutMs"),
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
    rendered = {}
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

    # The rendered TOML holds only keys the broker knows, with TOML types.
    config_doc = (ROOT / "docs" / "configuration.md").read_text()
    broker_keys = doc_table_keys(config_doc, "## Broker settings")
    schema = json.loads((CHART / "values.schema.json").read_text())
    schema_keys = set(schema["properties"]["broker"]["properties"]["config"]["properties"])
    chart_owned = {"data_dir", "listen", "advertise", "http_listen", "archive", "etcd",
                   "broker_id", "cluster", "shutdown_timeout_ms", "[topic_defaults]"}
    if broker_keys - chart_owned != schema_keys:
        fail("broker.config in values.schema.json and docs/configuration.md's keys differ: "
             f"only in the docs {sorted(broker_keys - chart_owned - schema_keys)}, "
             f"only in the schema {sorted(schema_keys - broker_keys)}")
    for name, docs in rendered.items():
        for d in docs:
            if d["kind"] == "ConfigMap":
                toml = tomllib.loads(d["data"]["sediment.toml"])
                unknown = set(toml) - broker_keys - {"topic_defaults"}
                if unknown:
                    fail(f"{name}: sediment.toml has keys the broker refuses: {unknown}")
                for key, value in toml.items():
                    if isinstance(value, float):
                        fail(f"{name}: sediment.toml {key} = {value} is a float")
                if name == "archive-secret" and toml.get("local_disk_budget_bytes") != 40 * 2**30:
                    fail(f"{name}: local_disk_budget_bytes did not reach sediment.toml: {toml}")
    print("ok   sediment.toml keys and types, schema keys match docs/configuration.md")

    # Every broker container env name the chart sets is one the broker reads.
    design = (ROOT / "docs" / "configuration.md").read_text()
    for name, docs in rendered.items():
        for d in docs:
            if d["kind"] != "StatefulSet":
                continue
            env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
            for key in env:
                if key.startswith("SEDIMENT_") and f"`{key}`" not in design:
                    fail(f"{name}: the StatefulSet sets {key}, which docs/configuration.md does not name")
            grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            shutdown_s = -(-(GOOD[name].get("broker", {}).get("shutdownTimeoutMs", 15000)) // 1000)
            if grace <= shutdown_s:
                fail(f"{name}: terminationGracePeriodSeconds {grace} <= shutdown {shutdown_s} s")
            if not env.get("SEDIMENT_ADVERTISE", "").startswith("$(POD_NAME)."):
                fail(f"{name}: SEDIMENT_ADVERTISE is not per pod: {env.get('SEDIMENT_ADVERTISE')}")
    print("ok   SEDIMENT_* env names, advertised address, termination grace period")

    # Alerts use only metrics that docs/operations.md's table lists.
    ops = (ROOT / "docs" / "operations.md").read_text()
    exported = set(re.findall(r"^\| `(sediment_[a-z_]+)` \|", ops, re.M))
    used = set()
    for docs in rendered.values():
        for d in docs:
            if d["kind"] == "PrometheusRule":
                for group in d["spec"]["groups"]:
                    for rule in group["rules"]:
                        used |= set(re.findall(r"\b(sediment_[a-z_]+)", rule["expr"]))
    if not used:
        fail("no PrometheusRule was rendered")
    missing = used - exported
    if missing:
        fail(f"alerts use metrics docs/operations.md does not list: {sorted(missing)}")
    print(f"ok   alerts use {len(used)} metric names, all in docs/operations.md")

    # Every value in values.yaml is documented in docs/deploy.md.
    deploy_doc = (ROOT / "docs" / "deploy.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", deploy_doc, re.M))

    def leaves(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and path not in (
                    "resources", "podSecurityContext", "securityContext",
                    "startupProbe", "readinessProbe", "livenessProbe"):
                yield from leaves(value, path + ".")
            else:
                yield path

    undocumented = [p for p in leaves(chart.values) if p not in documented]
    if undocumented:
        fail(f"values missing from docs/deploy.md's tables: {undocumented}")
    else:
        print("ok   every value in values.yaml is in docs/deploy.md")

    run_rendered_broker(rendered["archive-secret"])

    if failures:
        print(f"0 passed, {len(failures)} failed")
        sys.exit(1)


def broker_binary():
    if os.environ.get("SEDIMENT_BIN"):
        return Path(os.environ["SEDIMENT_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    for profile in ("debug", "release"):
        if (target / profile / "sediment").is_file():
            return target / profile / "sediment"
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rendered_broker(docs):
    """Starts the binary as the rendered StatefulSet would, on loopback."""
    binary = broker_binary()
    if binary is None:
        print("skip run of the rendered broker: no binary (set SEDIMENT_BIN or build first)")
        return
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        (scratch / "config").mkdir()
        for key, text in config["data"].items():
            (scratch / "config" / key).write_text(text)
        kafka, http = free_port(), free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "POD_NAME": "sediment-0"}
        for var in container["env"]:
            if "value" not in var:
                continue
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"])
            value = value.replace(mounts["config"], str(scratch / "config"))
            value = value.replace(mounts["data"], str(scratch / "data"))
            env[var["name"]] = value
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
    print(f"ok   {binary} ran with the rendered env and sediment.toml "
          f"(pod advertises {advertised_host}): ready, then SIGTERM -> exit 0")


if __name__ == "__main__":
    main()
