#!/usr/bin/env bash
# The main job (README): brings up real Cassandra, Kafka and a one-node Kubernetes cluster (kubelet,
# containerd, its own API server) on this machine, then runs the seed's example end to end as a user
# would: the operator installed with Helm and running as a pod, the seed's CassandraSink applied,
# worker pods moving a generated stream from Kafka into example.values exactly once with one worker
# pod killed half-way, progress shown, and a final check that the table holds exactly the last value
# sent for every key. The sink is left running (namespace demo) for a look around with kubectl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

if ! scripts/localenv.sh node-check; then
  cat >&2 <<'TXT'
The demo runs the operator and the workers as pods on a local Kubernetes node, which this machine
cannot host (see above). The servers alone still run here: scripts/localenv.sh up.
TXT
  exit 1
fi

step "1/4 local servers and the Kubernetes node (the first run downloads and builds them; later runs reuse them)"
scripts/localenv.sh up --node
eval "$(scripts/localenv.sh env)"
scripts/localenv.sh status

step "2/4 building the operator, the worker, their images and the demo"
cargo build --locked -p cassandra-sink-operator -p cassandra-sink-worker -p cassandra-sink-tests \
  --bin cassandra-sink-operator --bin cassandra-sink-worker --bin cassandra-sink-demo

step "3/4 round trips through the clients the product uses: CQL, Kafka, a CRD on the API server, the CLIs"
cargo test -p cassandra-sink-tests --test integration --locked -- smoke_ --test-threads=2

step "4/4 the seed's example on the node: helm install -> operator pod -> CassandraSink -> worker pods -> example.values"
"${CARGO_TARGET_DIR:-target}/debug/cassandra-sink-demo"

step "done"
cat <<TXT
Cassandra  $CASSANDRA_CONTACT_POINTS (pods: $POD_CASSANDRA_CONTACT_POINTS)
Kafka      $KAFKA_BOOTSTRAP_SERVERS (pods: $POD_KAFKA_BOOTSTRAP_SERVERS)
Kubernetes $KUBECTL --kubeconfig $NODE_KUBECONFIG -n demo get cassandrasinks,pods
Settings for your shell: eval "\$(scripts/localenv.sh env)"; stop everything: scripts/localenv.sh down
TXT
