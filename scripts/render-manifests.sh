#!/usr/bin/env bash
# Renders the generated deployment files:
#   deploy/cassandra-sink-operator.yaml  plain manifests for `kubectl apply -f`, from the Helm chart
#                                        (defaults, namespace cassandra-sink-system, CRD included)
#   gitops/argocd/argocd-cm.yaml         Argo CD's health check for CassandraSink, from health.lua
#   scripts/render-manifests.sh          write them
#   scripts/render-manifests.sh --check  fail, naming the file, when a committed one differs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
helm=${HELM:-}
if [ -z "$helm" ]; then
  eval "$(scripts/localenv.sh env)"
  helm=$HELM
fi

render_manifests() {
  cat <<'YAML'
# Generated from charts/cassandra-sink-operator by scripts/render-manifests.sh; do not edit.
# kubectl apply --server-side -f deploy/cassandra-sink-operator.yaml
apiVersion: v1
kind: Namespace
metadata:
  name: cassandra-sink-system
  labels:
    pod-security.kubernetes.io/enforce: restricted
YAML
  "$helm" template cassandra-sink-operator charts/cassandra-sink-operator \
    --namespace cassandra-sink-system --include-crds
}

render_argocd() {
  cat <<'YAML'
# Generated from gitops/argocd/health.lua by scripts/render-manifests.sh; do not edit.
# Merge into Argo CD's argocd-cm ConfigMap (kubectl -n argocd patch cm argocd-cm --patch-file …).
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
data:
  resource.customizations.health.cassandra-sink.io_CassandraSink: |
YAML
  sed 's/^/    /; s/^    $//' gitops/argocd/health.lua
}

if [ "${1:-}" = "--check" ]; then
  stale=0
  for pair in "deploy/cassandra-sink-operator.yaml:render_manifests" "gitops/argocd/argocd-cm.yaml:render_argocd"; do
    file=${pair%%:*}
    if ! diff -q <("${pair##*:}") "$file" >/dev/null 2>&1; then
      echo "$file is stale: run scripts/render-manifests.sh" >&2
      stale=1
    fi
  done
  exit $stale
fi
render_manifests >deploy/cassandra-sink-operator.yaml
render_argocd >gitops/argocd/argocd-cm.yaml
echo "wrote deploy/cassandra-sink-operator.yaml gitops/argocd/argocd-cm.yaml" >&2
