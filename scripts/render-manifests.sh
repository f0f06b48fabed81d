#!/usr/bin/env bash
# Renders the plain manifests for `kubectl apply -f` from the Helm chart (defaults, namespace
# cassandra-sink-system, CRD included) into deploy/cassandra-sink-operator.yaml, or to stdout with `-`.
# A test fails when the committed file and the chart disagree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
helm=${HELM:-}
if [ -z "$helm" ]; then
  eval "$(scripts/localenv.sh env)"
  helm=$HELM
fi
render() {
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
if [ "${1:-}" = "-" ]; then
  render
else
  render >deploy/cassandra-sink-operator.yaml
  echo "wrote deploy/cassandra-sink-operator.yaml" >&2
fi
