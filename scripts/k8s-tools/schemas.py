"""JSON schemas for kubeconform, made offline (called by scripts/install-k8s-tools.sh).

  python schemas.py core WHEEL K8S_VERSION OUT
      the Kubernetes API's schemas from the `kubernetes-validate` wheel (PyPI), made standalone:
      OUT/v<K8S_VERSION>-standalone-strict/<kind>-<group>-<version>.json
  python schemas.py crds OUT CRD.yaml...
      each CustomResourceDefinition's openAPIV3Schema per served version, strict (an object with
      properties allows no others unless it preserves unknown fields):
      OUT/crds/<group>/<kind>_<version>.json

These are kubeconform's own layouts (-schema-location templates
`{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json`
and `crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json`).
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

DEFS_REF = "/api/_definitions.json#/$defs/"


def core(wheel: Path, version: str, out: Path) -> int:
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
    target = out / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith(prefix) and n.endswith(".json")]
        if not names:
            raise SystemExit(f"{wheel.name} has no schemas for Kubernetes v{version}")
        defs = json.loads(z.read(prefix + "_definitions.json"))["$defs"]
        written = 0
        for name in names:
            schema = json.loads(z.read(name))
            if "x-kubernetes-group-version-kind" not in schema:
                continue  # a definition, not a kind one can apply
            schema = _local_refs(schema)
            schema.pop("$id", None)
            schema["$defs"] = {k: defs[k] for k in sorted(_reachable(schema, defs))}
            (target / name.removeprefix(prefix)).write_text(json.dumps(schema))
            written += 1
    return written


def _local_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: ("#/$defs/" + v.removeprefix(DEFS_REF) if k == "$ref" and isinstance(v, str)
                    and v.startswith(DEFS_REF) else _local_refs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_local_refs(v) for v in node]
    return node


def _reachable(schema: Any, defs: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name not in seen:
                    seen.add(name)
                    todo.append(defs[name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return seen


def crds(out: Path, files: list[Path]) -> int:
    written = 0
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for v in spec["versions"]:
                schema = (v.get("schema") or {}).get("openAPIV3Schema")
                if not v.get("served", True) or schema is None:
                    continue
                schema = _strict(schema)
                props = schema.setdefault("properties", {})
                props.setdefault("apiVersion", {"type": "string"})
                props.setdefault("kind", {"type": "string"})
                props.setdefault("metadata", {"type": "object"})
                props["apiVersion"] = {**props["apiVersion"], "enum": [f"{group}/{v['name']}"]}
                props["kind"] = {**props["kind"], "enum": [kind]}
                schema["$schema"] = "http://json-schema.org/draft-07/schema#"
                target = out / "crds" / group / f"{kind.lower()}_{v['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema))
                written += 1
    return written


def _strict(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes flavour) to JSON schema: nullable, int-or-string, and no unknown
    properties where the CRD lists them (as the API server prunes, so kubeconform rejects)."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False) or out.get("format") == "int-or-string":
        out.pop("type", None)
        out.pop("format", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def main(argv: list[str]) -> None:
    if len(argv) >= 4 and argv[0] == "core":
        n = core(Path(argv[1]), argv[2].removeprefix("v"), Path(argv[3]))
        print(f"{n} Kubernetes v{argv[2].removeprefix('v')} kinds")
    elif len(argv) >= 3 and argv[0] == "crds":
        n = crds(Path(argv[1]), [Path(a) for a in argv[2:]])
        print(f"{n} custom resource versions")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
