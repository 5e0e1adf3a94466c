#!/usr/bin/env bash
# Every check of the chart, from the repository root's tools (run scripts/chart-tools.sh first).
# Exits non-zero if any check fails. Usage: helm/strata/tests/check.sh
set -uo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
H=.tools/bin/helm
KV=.tools/venv/bin/kubernetes-validate
PY=.tools/venv/bin/python
K8S_VERSION=1.37
chart=helm/strata
failed=0

[[ -x $H && -x $KV ]] || { echo "run scripts/chart-tools.sh first" >&2; exit 2; }

step() {
  local name=$1
  shift
  if out=$("$@" 2>&1); then
    echo "ok   $name"
  else
    echo "FAIL $name"
    echo "$out" | sed 's/^/     /'
    failed=1
  fi
}

# The rendered strata.toml parses and uses only keys of EXAMPLE_CONFIG in broker/src/config.rs
# (whose commented-out "# key = value" lines count too).
config_keys() {
  "$H" template t "$chart" "$@" --show-only templates/configmap.yaml | "$PY" -c '
import re, sys, tomllib, yaml
rendered = tomllib.loads(yaml.safe_load(sys.stdin)["data"]["strata.toml"])
src = open("broker/src/config.rs").read()
example = src.split("pub const EXAMPLE_CONFIG: &str = r#\"", 1)[1].split("\"#;", 1)[0]
example = re.sub(r"(?m)^# ([a-z_]+ = )", r"\1", example)
known = tomllib.loads(example)
def walk(d, k, p=""):
    for key, v in d.items():
        if key not in k:
            sys.exit(f"unknown key {p}{key} in the rendered strata.toml")
        if isinstance(v, dict):
            walk(v, k[key], f"{p}{key}.")
walk(rendered, known)
'
}

sets=("" "$chart"/ci/*.yaml)
step "helm lint --strict" "$H" lint --strict "$chart"
for f in "${sets[@]}"; do
  args=()
  [[ -n $f ]] && args=(-f "$f")
  label=${f:-default values}
  [[ -n $f ]] && step "helm lint --strict -f $f" "$H" lint --strict "$chart" "${args[@]}"
  step "kubernetes-validate --strict -k $K8S_VERSION ($label)" \
    bash -c "'$H' template t '$chart' ${args[*]} | '$KV' --strict -k $K8S_VERSION --quiet -"
  step "ServiceMonitor/PrometheusRule schemas ($label)" \
    bash -c "'$H' template t '$chart' ${args[*]} | '$PY' '$chart/tests/validate-crds.py' -"
  step "strata.toml keys ($label)" config_keys "${args[@]}"
done
step "promtool test rules (ci/monitoring.yaml)" bash -c \
  "'$H' template t '$chart' -n default -f '$chart/ci/monitoring.yaml' | '$PY' '$chart/tests/validate-crds.py' --alert-tests '$chart/tests/alerts-test.yaml' -"
# Each bad value file names, in an "# expect: ..." line, the error helm must give: rejected for
# the intended reason, not any.
rejects() {
  local f=$1 expect out
  expect=$(sed -n 's/^# expect: //p' "$f" | head -n 1)
  [[ -n $expect ]] || { echo "$f has no '# expect:' line"; return 1; }
  if out=$("$H" template t "$chart" -f "$f" 2>&1 >/dev/null); then
    echo "accepted"
    return 1
  fi
  grep -qF -- "$expect" <<<"$out" || { echo "rejected, but not with \"$expect\": $out"; return 1; }
}
for f in "$chart"/tests/bad-values/*.yaml; do
  step "rejects $f" rejects "$f"
done
exit $failed
