#!/usr/bin/env bash
# The main job (README): brings up real Cassandra, Kafka, etcd and kube-apiserver on this machine and
# proves each is real with a round trip through the clients the product uses, showing progress as it goes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "1/3 local servers (first run downloads and builds them; later runs reuse them)"
scripts/localenv.sh up
eval "$(scripts/localenv.sh env)"
scripts/localenv.sh status

step "2/3 building the workspace"
cargo build --workspace --all-targets --locked

step "3/3 round trips: CQL through the scylla driver, Kafka through rdkafka, a CRD and an object through kube, the CLIs"
cargo test -p cassandra-sink-tests --test integration --locked -- smoke_ --test-threads=2 --nocapture

step "done"
cat <<TXT
Cassandra  $CASSANDRA_CONTACT_POINTS
Kafka      $KAFKA_BOOTSTRAP_SERVERS
Kubernetes KUBECONFIG=$KUBECONFIG   ($KUBECTL get ns)
Settings for your shell: eval "\$(scripts/localenv.sh env)"; stop the servers: scripts/localenv.sh down
TXT
