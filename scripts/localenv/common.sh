# Shared settings and helpers for scripts/localenv.sh. Sourced, never run.
#
# Every setting can be overridden from the environment, so two checkouts (or CI and a developer) can run
# side by side on other ports and folders.

: "${LOCALENV_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
# Downloads and builds: shared by every checkout on the machine, survives `down` and `git clean`.
: "${LOCALENV_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/cassandra-sink}"
# Data folders, logs, pid files, kubeconfig: one per checkout.
: "${LOCALENV_STATE:=$LOCALENV_ROOT/.localenv}"
: "${LOCALENV_TIMEOUT:=300}"

: "${CASSANDRA_VERSION:=5.0.8}"
: "${CASSANDRA_PORT:=9042}"
: "${CASSANDRA_STORAGE_PORT:=7000}"
: "${CASSANDRA_HEAP:=1G}"
# JMX of the `cassandra` node, on loopback only: `scripts/localenv.sh nodetool` (the benchmark flushes
# memtables through it between its parts).
: "${CASSANDRA_JMX_PORT:=7199}"
: "${CASSANDRA_AUTH_PORT:=9043}"
: "${CASSANDRA_AUTH_STORAGE_PORT:=7010}"
: "${CASSANDRA_AUTH_HEAP:=512M}"
: "${KAFKA_VERSION:=4.1.1}"
: "${KAFKA_PORT:=9092}"
: "${KAFKA_CONTROLLER_PORT:=9093}"
: "${KAFKA_SASL_SSL_PORT:=9094}"
: "${REGISTRY_VERSION:=2.4.2.Final}"
: "${REGISTRY_QUARKUS_VERSION:=2.16.4.Final}"
: "${REGISTRY_PORT:=18081}"
: "${KUBE_VERSION:=1.34.4}"
: "${ETCD_VERSION:=3.6.5}"
: "${ETCD_PORT:=2379}"
: "${ETCD_PEER_PORT:=2380}"
: "${APISERVER_PORT:=6443}"
: "${HELM_VERSION:=3.19.0}"
: "${KUBECONFORM_VERSION:=0.7.0}"
# The host's address on the node's pod bridge (scripts/localenv/node.sh): Cassandra and Kafka accept
# pods there, Kafka on listeners of their own that advertise it.
: "${NODE_ADDRESS:=10.244.0.1}"
: "${KAFKA_POD_PORT:=9095}"
: "${KAFKA_POD_SASL_SSL_PORT:=9096}"
# The clusters of scripts/localenv/cluster.sh: Cassandra nodes on 127.0.1.<n>, Kafka brokers on 127.0.2.<n>
# (every 127/8 address is loopback on Linux), each on the same ports at its own address.
: "${CLUSTER_CASSANDRA_NODES:=3}"
: "${CLUSTER_CASSANDRA_REMOTE_NODES:=1}"
: "${CLUSTER_CASSANDRA_PORT:=9142}"
: "${CLUSTER_CASSANDRA_STORAGE_PORT:=7100}"
: "${CLUSTER_CASSANDRA_HEAP:=512M}"
: "${CLUSTER_KAFKA_BROKERS:=3}"
: "${CLUSTER_KAFKA_PORT:=9192}"
: "${CLUSTER_KAFKA_CONTROLLER_PORT:=9193}"
: "${CLUSTER_KAFKA_HEAP:=384m}"

BIN_DIR="$LOCALENV_CACHE/bin"
LOG_DIR="$LOCALENV_STATE/logs"
PID_DIR="$LOCALENV_STATE/pids"
KUBECONFIG_PATH="$LOCALENV_STATE/kubeconfig"
ENV_FILE="$LOCALENV_STATE/env"

mkdir -p "$LOCALENV_CACHE" "$BIN_DIR" "$LOG_DIR" "$PID_DIR"

say() { printf '\033[1m[localenv]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[localenv] error:\033[0m %s\n' "$*" >&2; exit 1; }

# port_open PORT [HOST]: true when something accepts TCP connections on HOST (127.0.0.1) at PORT.
port_open() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

pid_of() { [ -f "$PID_DIR/$1.pid" ] && cat "$PID_DIR/$1.pid"; }

# True when the process recorded for server $1 is alive.
running() {
  local pid
  pid=$(pid_of "$1") || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# start NAME CMD...: start a server detached from this shell, in its own session, logging to LOG_DIR.
start_process() {
  local name=$1
  shift
  : >"$LOG_DIR/$name.log"
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$PID_DIR/$name.pid"
}

# wait_ready NAME CHECK-COMMAND...: poll until the check passes, the process dies, or the timeout runs out.
# On failure it names the server and prints the tail of its log, then exits.
wait_ready() {
  local name=$1
  shift
  local deadline=$((SECONDS + LOCALENV_TIMEOUT))
  while ! "$@" >/dev/null 2>&1; do
    if ! running "$name"; then
      report_failure "$name" "exited before it became ready"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      report_failure "$name" "not ready after ${LOCALENV_TIMEOUT}s"
    fi
    sleep 1
  done
}

report_failure() {
  printf '\033[31m[localenv] %s %s.\033[0m Last lines of %s:\n' "$1" "$2" "$LOG_DIR/$1.log" >&2
  tail -n 40 "$LOG_DIR/$1.log" >&2 || true
  exit 1
}

# stop NAME: stop the process this script started (by pid, never by name), TERM then KILL.
stop_process() {
  local name=$1 pid
  pid=$(pid_of "$name") || return 0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    say "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_DIR/$name.pid"
}

# Resident memory of a server's process, in MiB.
rss_mib() {
  local pid
  pid=$(pid_of "$1") || return 0
  awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$pid/status" 2>/dev/null
}
