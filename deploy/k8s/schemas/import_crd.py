"""Store a published CustomResourceDefinition's schema for the checker:

    python deploy/k8s/schemas/import_crd.py CRD.yaml [--version v1]

writes ``<group>/<kind>_<version>.json`` beside this file for each served version (or the one
named): the version's ``openAPIV3Schema`` with the descriptions left out (they do not
validate anything and make up most of a CRD's size). Run it on the CRD files of the operator
release the cluster runs, then note the release in README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def without_descriptions(schema: Any) -> Any:
    if isinstance(schema, list):
        return [without_descriptions(item) for item in schema]
    if isinstance(schema, dict):
        return {key: without_descriptions(value) for key, value in schema.items() if key != "description"}
    return schema


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("crd", type=Path, help="a CustomResourceDefinition YAML file")
    parser.add_argument("--version", help="only this version (default: every served one)")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: beside this file)")
    args = parser.parse_args()
    written = 0
    for doc in yaml.safe_load_all(args.crd.read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for version in spec["versions"]:
            if not version.get("served") or (args.version and version["name"] != args.version):
                continue
            schema = without_descriptions(version["schema"]["openAPIV3Schema"])
            path = args.out / spec["group"] / f"{spec['names']['kind']}_{version['name']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            print(f"wrote {path}")
            written += 1
    if not written:
        print(f"{args.crd}: no served version to store", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
