"""Checks Kubernetes manifests offline against the models of the official
Python client (`pip install kubernetes`): every key must be a field of its
model and every value of the field's type (the client itself ignores
unknown keys), and `ApiClient().deserialize` must build each document
(which enforces required fields). Usage: k8s_check.py FILE.yaml
"""

import inspect
import json
import re
import sys

import yaml
import kubernetes.client as models
from kubernetes.client import ApiClient

KINDS = {("v1", "ConfigMap"): "V1ConfigMap", ("batch/v1", "Job"): "V1Job"}
PRIMITIVES = {
    "str": (str,),
    "bytes": (str,),
    "datetime": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (object,),
}


def check(value, typ, path, errors):
    # The client spells them list[T] / dict(str, T) or List[T] / Dict[str, T].
    inner = re.fullmatch(r"[lL]ist\[(.*)\]", typ)
    if inner:
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {value!r}")
            return
        for i, item in enumerate(value):
            check(item, inner.group(1), f"{path}[{i}]", errors)
        return
    inner = re.fullmatch(r"dict\(str, (.*)\)|Dict\[str, (.*)\]", typ)
    if inner:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a map, got {value!r}")
            return
        for key, item in value.items():
            check(item, inner.group(1) or inner.group(2), f"{path}.{key}", errors)
        return
    if typ in PRIMITIVES:
        wrong_bool = typ in ("int", "float") and isinstance(value, bool)
        if wrong_bool or not isinstance(value, PRIMITIVES[typ]):
            errors.append(f"{path}: expected {typ}, got {value!r}")
        return
    model = getattr(models, typ)
    if not isinstance(value, dict):
        errors.append(f"{path}: expected a {typ} map, got {value!r}")
        return
    fields = {model.attribute_map[a]: t for a, t in model.openapi_types.items()}
    for key, item in value.items():
        if key not in fields:
            errors.append(f"{path}.{key}: not a field of {typ}")
        else:
            check(item, fields[key], f"{path}.{key}", errors)


class Response:
    def __init__(self, doc):
        self.data = json.dumps(doc)


def deserialize(client, doc, kind):
    """`ApiClient().deserialize`, whose arguments changed in client 34:
    (response, type) before, (text, type, content type) since."""
    params = inspect.signature(client.deserialize).parameters
    if "content_type" in params:
        return client.deserialize(json.dumps(doc), kind, "application/json")
    return client.deserialize(Response(doc), kind)


def main(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    errors = [] if docs else [f"{path}: no documents"]
    client = ApiClient()
    for i, doc in enumerate(docs):
        kind = KINDS.get((doc.get("apiVersion"), doc.get("kind")))
        if kind is None:
            errors.append(f"document {i}: unexpected {doc.get('apiVersion')} {doc.get('kind')}")
            continue
        check(doc, kind, f"document {i} ({kind})", errors)
        try:
            deserialize(client, doc, kind)
        except Exception as e:  # whatever the client raises is a finding
            errors.append(f"document {i} ({kind}): {e}")
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"ok -- {len(docs)} documents: " + ", ".join(d["kind"] for d in docs))


if __name__ == "__main__":
    main(sys.argv[1])
