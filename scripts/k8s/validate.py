"""Validate deploy/k8s as a cluster would see it: `kustomize build`, then `kubeconform -strict` against the
Kubernetes schemas of the kubernetes-validate package and the vendored CRD schemas (deploy/k8s/schemas/).

    python scripts/k8s/validate.py [--kubernetes-version 1.37.0]     # prints kubeconform's JSON summary

Exit 0 when every resource is valid; no resource may be skipped for want of a schema.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HEALTHPIPE_CACHE", Path.home() / ".cache" / "healthpipe"))
PACKAGE_SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"


def kubernetes_schemas(version: str) -> Path:
    """The package's schemas, made loadable from files: they name each other through `$id`s on kubernetes.io
    (`/api/_definitions.json`), which kubeconform would try to fetch; without the `$id` a relative reference
    finds the file next to it. Cached by package and Kubernetes version."""
    package_version = kubernetes_validate.__version__ if hasattr(kubernetes_validate, "__version__") else "x"
    out = CACHE / f"k8s-schemas-{package_version}-v{version}-strict"
    if (out / "_definitions.json").exists():
        return out
    source = PACKAGE_SCHEMAS / f"v{version}-local-strict"
    if not source.is_dir():
        have = sorted(p.name for p in PACKAGE_SCHEMAS.iterdir())
        sys.exit(f"kubernetes-validate has no schemas for {version} (it has {', '.join(have)})")
    tmp = out.with_suffix(".part")
    tmp.mkdir(parents=True, exist_ok=True)
    for f in source.glob("*.json"):
        schema = json.loads(f.read_text())
        if isinstance(schema, dict):
            schema.pop("$id", None)
        (tmp / f.name).write_text(json.dumps(schema).replace('"/api/_definitions.json', '"_definitions.json'))
    tmp.rename(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", default="1.37.0")
    args = parser.parse_args()
    tools = Path(subprocess.run([str(ROOT / "scripts" / "k8s" / "tools.sh")], check=True, capture_output=True,
                                text=True).stdout.strip())
    rendered = subprocess.run([str(tools / "kustomize"), "build", str(ROOT / "deploy" / "k8s")], check=True,
                              capture_output=True, text=True).stdout
    core = kubernetes_schemas(args.kubernetes_version)
    result = subprocess.run(
        [str(tools / "kubeconform"), "-strict", "-summary", "-output", "json",
         "-schema-location", f"{core}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
         "-schema-location",
         f"{ROOT}/deploy/k8s/schemas/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json", "-"],
        input=rendered, capture_output=True, text=True)
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
