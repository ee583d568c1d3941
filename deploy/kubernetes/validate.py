#!/usr/bin/env python3
"""Strict, offline validation of rendered manifests (kustomize output, one or more files).

Built-in kinds go to kubernetes-validate in strict mode (its bundled Kubernetes schemas); the
custom resources (KEDA's ScaledObject, ScaledJob, TriggerAuthentication, the Prometheus
operator's PodMonitor) are checked against the CRD schemas in deploy/kubernetes/schemas/, made
strict the same way (an object that lists its properties takes no other). A kind with no
schema at all is an error, not the warning kubernetes-validate gives it.

Usage: validate.py [-k KUBERNETES_VERSION] FILE...
"""
import argparse
import json
import os
import sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")


def strict(schema):
    """additionalProperties: false wherever properties are listed and nothing else is allowed."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_schema(resource):
    group_version = resource.get("apiVersion", "")
    if "/" not in group_version:
        return None
    group, version = group_version.split("/", 1)
    name = "%s-%s-%s.json" % (resource["kind"].lower(), group.split(".")[0], version)
    path = os.path.join(SCHEMAS, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return strict(json.load(f))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-k", "--kubernetes-version", default="1.33.0")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    failures = 0
    for filename in args.files:
        with open(filename) as f:
            resources = [r for r in yaml.safe_load_all(f) if r]
        for r in resources:
            name = "%s %s/%s" % (filename, r.get("kind"), r.get("metadata", {}).get("name"))
            schema = crd_schema(r)
            try:
                if schema is not None:
                    jsonschema.Draft7Validator(schema).validate(r)
                    how = "CRD schema"
                else:
                    kv.validate(r, args.kubernetes_version, strict=True)
                    how = "kubernetes-validate --strict (%s)" % args.kubernetes_version
                print("ok      %s: %s" % (name, how))
            except jsonschema.ValidationError as e:
                path = ".".join(str(p) for p in e.absolute_path)
                print("INVALID %s: %s: %s" % (name, path, e.message))
                failures += 1
            except kv.SchemaNotFoundError as e:
                print("INVALID %s: no schema: %s" % (name, e.message))
                failures += 1
    print("%d resource(s) invalid" % failures if failures else "all resources valid")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
