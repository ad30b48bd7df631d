"""Turn CustomResourceDefinitions into the JSON schemas kubeconform reads, under deploy/k8s/schemas/.

    python scripts/k8s/vendor_crds.py SOURCE_LABEL CRD.yaml [CRD.yaml ...]

Writes <group>/<kind>_<version>.json (kubeconform's `{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json`)
for every served version, and records the source in deploy/k8s/schemas/SOURCES.md. Run it again with the
operator's CRDs when moving to a new operator version.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "schemas"


def strict(schema: dict) -> dict:
    """Objects with declared properties reject unknown ones (as the API server's structural pruning would drop
    them), unless the CRD says it preserves unknown fields."""
    if isinstance(schema, dict):
        if schema.get("properties") and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        for value in schema.values():
            if isinstance(value, dict):
                strict(value)
            elif isinstance(value, list):
                for item in value:
                    strict(item)
    return schema


def main(label: str, paths: list[str]) -> None:
    written = []
    for path in paths:
        for crd in yaml.safe_load_all(Path(path).read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"].lower()
            for version in crd["spec"]["versions"]:
                if not version.get("served", True):
                    continue
                target = OUT / group / f"{kind}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(strict(version["schema"]["openAPIV3Schema"]), indent=1) + "\n")
                written.append(target.relative_to(OUT).as_posix())
    sources = OUT / "SOURCES.md"
    lines = sources.read_text().splitlines() if sources.exists() else [
        "# Vendored CRD schemas (scripts/k8s/vendor_crds.py)", "", "| schema | source |", "|---|---|"]
    lines = [line for line in lines if not any(f"`{w}`" in line for w in written)]
    lines += [f"| `{w}` | {label} |" for w in written]
    sources.write_text("\n".join(lines) + "\n")
    print("\n".join(written))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
