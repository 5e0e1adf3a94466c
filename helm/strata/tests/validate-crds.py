#!/usr/bin/env python3
"""Checks the Prometheus Operator objects in rendered chart output, which kubernetes-validate skips
(it ships no schemas for CRD kinds: it prints "WARN ... Couldn't find schema for kind
ServiceMonitor" and still exits 0).

    helm template t helm/strata -f helm/strata/ci/monitoring.yaml \
      | .tools/venv/bin/python helm/strata/tests/validate-crds.py [--alert-tests FILE] -

- ServiceMonitor and PrometheusRule specs are validated against the v1 CRD schemas vendored in
  tests/crds/ (prometheus-operator's openAPIV3Schema), strictly: an object schema listing its
  properties rejects any other property, as `kubernetes-validate --strict` does for built-in kinds.
- Their metadata must have a name, a namespace and string labels.
- PrometheusRule groups are checked with `promtool check rules` when promtool is on PATH (Debian
  package `prometheus`), and with `--alert-tests FILE` also unit-tested with `promtool test rules
  FILE` (FILE names the rules as rules.yaml; see alerts-test.yaml); without promtool both are
  skipped with a message (exit code unaffected).
- Any other kind outside the built-in API groups is an error, so a new CRD kind cannot slip
  through unchecked.

Needs PyYAML and jsonschema (both in .tools/venv, installed with kubernetes-validate).
Exits 1 when anything is invalid.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}


def strict(schema):
    """Adds additionalProperties: false to every object schema that lists properties and neither
    allows extra ones already nor preserves unknown fields."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def is_builtin(api_version):
    group = api_version.split("/")[0] if "/" in api_version else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def check_metadata(doc):
    errors = []
    meta = doc.get("metadata") or {}
    for key in ("name", "namespace"):
        if not isinstance(meta.get(key), str) or not meta.get(key):
            errors.append(f"metadata.{key} missing")
    for key in ("labels", "annotations"):
        values = meta.get(key) or {}
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            errors.append(f"metadata.{key} must map strings to strings")
    return errors


def promtool_check(doc, alert_tests):
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("STRATA_REQUIRE_CHART_TOOLS", "0") not in ("", "0"):
            return ["promtool not on PATH, and STRATA_REQUIRE_CHART_TOOLS is set (CI installs Debian's prometheus)"]
        print("SKIP promtool not on PATH: PrometheusRule expressions not checked")
        return []
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "rules.yaml"), "w") as f:
            yaml.safe_dump({"groups": doc["spec"]["groups"]}, f)
        run = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=tmp, capture_output=True, text=True)
        if run.returncode != 0:
            errors.append(f"promtool check rules: {run.stdout.strip()} {run.stderr.strip()}")
        elif alert_tests:
            shutil.copy(alert_tests, os.path.join(tmp, "alerts-test.yaml"))
            run = subprocess.run([promtool, "test", "rules", "alerts-test.yaml"], cwd=tmp, capture_output=True, text=True)
            if run.returncode != 0:
                errors.append(f"promtool test rules {alert_tests}: {run.stdout.strip()} {run.stderr.strip()}")
            else:
                print(f"INFO promtool test rules {alert_tests} passed")
    return errors


def main():
    args = sys.argv[1:]
    alert_tests = None
    if len(args) == 3 and args[0] == "--alert-tests":
        alert_tests = os.path.abspath(args[1])
        args = args[2:]
    if len(args) != 1:
        sys.exit(__doc__)
    text = sys.stdin.read() if args[0] == "-" else open(args[0]).read()
    docs = [d for d in yaml.safe_load_all(text) if d]
    failed = False
    checked = 0
    for doc in docs:
        api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        name = f"{kind.lower()}/{(doc.get('metadata') or {}).get('name')}"
        if (api, kind) in SCHEMAS:
            with open(os.path.join(HERE, "crds", SCHEMAS[(api, kind)])) as f:
                schema = strict(json.load(f))
            schema.pop("$comment", None)
            schema["properties"]["metadata"] = {"type": "object"}
            errors = [
                f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                for e in jsonschema.Draft7Validator(schema).iter_errors(doc)
            ]
            errors += check_metadata(doc)
            if kind == "PrometheusRule" and not errors:
                errors += promtool_check(doc, alert_tests)
            checked += 1
        elif is_builtin(api):
            continue
        else:
            errors = [f"no schema for {api} {kind}: add one to tests/crds/ and SCHEMAS"]
        if errors:
            failed = True
            for e in errors:
                print(f"ERROR {name}: {e}")
        else:
            print(f"INFO {name} passed ({api})")
    if checked == 0:
        print("INFO no ServiceMonitor or PrometheusRule in the input")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
