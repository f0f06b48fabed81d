# Local clusters for the tests of replication, node loss and datacenters: a Cassandra cluster of
# CLUSTER_CASSANDRA_NODES nodes in datacenter dc1 and CLUSTER_CASSANDRA_REMOTE_NODES in dc2
# (GossipingPropertyFileSnitch), and a Kafka cluster of CLUSTER_KAFKA_BROKERS KRaft nodes (each broker
# and controller, one quorum). Node n listens on 127.0.1.n (Cassandra) or 127.0.2.n (Kafka), every one
# on the same ports, so killing, freezing or restarting one is a matter of its pid. Sourced by
# localenv.sh; uses the jars of cassandra.sh and kafka.sh.

cluster_cassandra_names() {
  local n
  for n in $(seq 1 $((CLUSTER_CASSANDRA_NODES + CLUSTER_CASSANDRA_REMOTE_NODES))); do
    echo "cluster-cassandra-$n"
  done
}

cluster_kafka_names() {
  local n
  for n in $(seq 1 "$CLUSTER_KAFKA_BROKERS"); do echo "cluster-kafka-$n"; done
}

# cluster_cassandra_instance N: CASS_* settings of cluster node N (see cassandra_instance). Every node
# is a seed: they start side by side, and a seed needs no other node to be up.
cluster_cassandra_instance() {
  local n=$1 seeds="" i
  for i in $(seq 1 $((CLUSTER_CASSANDRA_NODES + CLUSTER_CASSANDRA_REMOTE_NODES))); do
    seeds="$seeds${seeds:+,}127.0.1.$i:$CLUSTER_CASSANDRA_STORAGE_PORT"
  done
  CASS_ADDRESS=127.0.1.$n CASS_SEEDS=$seeds CASS_SNITCH=GossipingPropertyFileSnitch
  CASS_PORT=$CLUSTER_CASSANDRA_PORT CASS_STORAGE_PORT=$CLUSTER_CASSANDRA_STORAGE_PORT
  CASS_HEAP=$CLUSTER_CASSANDRA_HEAP CASS_AUTHENTICATOR=AllowAllAuthenticator CASS_CLUSTER=localenv-cluster
  if [ "$n" -le "$CLUSTER_CASSANDRA_NODES" ]; then CASS_DC=dc1; else CASS_DC=dc2; fi
}

# cluster_kafka_instance N: the settings of broker N, in KB_* variables.
cluster_kafka_instance() {
  KB_NAME=cluster-kafka-$1
  KB_ID=$1
  KB_ADDRESS=127.0.2.$1
  KB_DIR="$LOCALENV_STATE/$KB_NAME"
}

write_cluster_kafka_config() {
  local voters="" i
  for i in $(seq 1 "$CLUSTER_KAFKA_BROKERS"); do
    voters="$voters${voters:+,}$i@127.0.2.$i:$CLUSTER_KAFKA_CONTROLLER_PORT"
  done
  mkdir -p "$KB_DIR/data"
  # Replicated like a production cluster: three copies of every topic and of the group offsets, and
  # a write acknowledged by all (acks=all) only once two of them have it.
  cat >"$KB_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=$KB_ID
controller.quorum.voters=$voters
listeners=PLAINTEXT://$KB_ADDRESS:$CLUSTER_KAFKA_PORT,CONTROLLER://$KB_ADDRESS:$CLUSTER_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KB_ADDRESS:$CLUSTER_KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KB_DIR/data
num.partitions=1
default.replication.factor=$CLUSTER_KAFKA_BROKERS
min.insync.replicas=2
offsets.topic.replication.factor=$CLUSTER_KAFKA_BROKERS
transaction.state.log.replication.factor=$CLUSTER_KAFKA_BROKERS
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=$CLUSTER_KAFKA_BROKERS
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
  write_kafka_log_config "$KB_DIR"
}

cluster_kafka_ready() {
  port_open "$CLUSTER_KAFKA_PORT" "$KB_ADDRESS" && grep -q "Kafka Server started" "$LOG_DIR/$KB_NAME.log" 2>/dev/null
}

# launch_cluster_kafka N: format (first start) and start broker N; does not wait.
launch_cluster_kafka() {
  cluster_kafka_instance "$1"
  running "$KB_NAME" && return
  port_open "$CLUSTER_KAFKA_PORT" "$KB_ADDRESS" &&
    die "$KB_ADDRESS:$CLUSTER_KAFKA_PORT is taken by a process this script did not start"
  write_cluster_kafka_config
  if [ ! -f "$KB_DIR/data/meta.properties" ]; then
    kafka_java kafka.tools.StorageTool format -t bG9jYWxlbnYtY2x1c3Rlci0z \
      -c "$KB_DIR/server.properties" >"$LOG_DIR/$KB_NAME-format.log" 2>&1 ||
      { tail -n 20 "$LOG_DIR/$KB_NAME-format.log" >&2; die "$KB_NAME: storage format failed"; }
  fi
  say "starting Kafka $KAFKA_VERSION ($KB_NAME, KRaft voter $KB_ID) on $KB_ADDRESS:$CLUSTER_KAFKA_PORT"
  start_process "$KB_NAME" "${JAVA17:-java}" "-Xms$CLUSTER_KAFKA_HEAP" "-Xmx$CLUSTER_KAFKA_HEAP" \
    "-Dlog4j2.configurationFile=$KB_DIR/log4j2.properties" \
    -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$KB_DIR/server.properties"
}

await_cluster_kafka() {
  cluster_kafka_instance "$1"
  wait_ready "$KB_NAME" cluster_kafka_ready
}

cluster_print_env() {
  local cassandra="" kafka="" n
  for n in $(seq 1 "$CLUSTER_CASSANDRA_NODES"); do
    cassandra="$cassandra${cassandra:+,}127.0.1.$n:$CLUSTER_CASSANDRA_PORT"
  done
  for n in $(seq 1 "$CLUSTER_KAFKA_BROKERS"); do
    kafka="$kafka${kafka:+,}127.0.2.$n:$CLUSTER_KAFKA_PORT"
  done
  cat <<EOF
export CLUSTER_CASSANDRA_CONTACT_POINTS=$cassandra
export CLUSTER_CASSANDRA_NODES=$CLUSTER_CASSANDRA_NODES
export CLUSTER_CASSANDRA_REMOTE_NODES=$CLUSTER_CASSANDRA_REMOTE_NODES
export CLUSTER_CASSANDRA_PORT=$CLUSTER_CASSANDRA_PORT
export CLUSTER_KAFKA_BOOTSTRAP_SERVERS=$kafka
export CLUSTER_KAFKA_BROKERS=$CLUSTER_KAFKA_BROKERS
export CLUSTER_KAFKA_PORT=$CLUSTER_KAFKA_PORT
export LOCALENV_PID_DIR=$PID_DIR
EOF
}

# cluster_up: install what is missing, start every node of both clusters side by side, and wait
# until each is ready.
cluster_up() {
  local started=$SECONDS name n
  install_cassandra
  install_kafka
  ensure_server_tls
  for name in $(cluster_cassandra_names); do launch_cassandra "$name"; done
  for n in $(seq 1 "$CLUSTER_KAFKA_BROKERS"); do launch_cluster_kafka "$n"; done
  for n in $(seq 1 "$CLUSTER_KAFKA_BROKERS"); do await_cluster_kafka "$n"; done
  for name in $(cluster_cassandra_names); do await_cassandra "$name"; done
  cluster_await_ring
  say "clusters ready in $((SECONDS - started))s: Cassandra $(cluster_cassandra_names | wc -l) nodes" \
    "($CLUSTER_CASSANDRA_NODES in dc1, $CLUSTER_CASSANDRA_REMOTE_NODES in dc2), Kafka $CLUSTER_KAFKA_BROKERS brokers"
}

# Every Cassandra node has seen every other one up (gossip settled), so a test's first keyspace with
# replication factor 3 finds its replicas at once. Each node logs "/<address>:<port> is now UP" once
# for each peer it sees after it starts.
cluster_await_ring() {
  local total deadline=$((SECONDS + LOCALENV_TIMEOUT)) name complete
  total=$(cluster_cassandra_names | wc -l)
  while true; do
    complete=true
    for name in $(cluster_cassandra_names); do
      [ "$(grep -o '/127\.0\.1\.[0-9]*:[0-9]* is now UP' "$LOG_DIR/$name.log" 2>/dev/null | sort -u | wc -l)" \
        -ge $((total - 1)) ] || complete=false
    done
    $complete && return
    [ "$SECONDS" -lt "$deadline" ] ||
      die "the Cassandra cluster did not form in ${LOCALENV_TIMEOUT}s (see $LOG_DIR/cluster-cassandra-*.log)"
    sleep 2
  done
}

cluster_down() {
  local name
  for name in $(cluster_kafka_names) $(cluster_cassandra_names); do stop_process "$name"; done
}

cluster_status() {
  local name
  for name in $(cluster_cassandra_names) $(cluster_kafka_names); do
    if running "$name"; then
      printf '%-19s running  pid %-8s rss %5s MiB\n' "$name" "$(pid_of "$name")" "$(rss_mib "$name")"
    else
      printf '%-19s stopped\n' "$name"
    fi
  done
}

# cluster_start NAME...: start stopped nodes (after a test killed them) side by side, and wait until
# each is ready.
cluster_start() {
  local name
  [ $# -gt 0 ] || die "start which cluster node? cluster-cassandra-<n> or cluster-kafka-<n>"
  for name in "$@"; do
    case "$name" in
      cluster-cassandra-*) launch_cassandra "$name" ;;
      cluster-kafka-*) launch_cluster_kafka "${name#cluster-kafka-}" ;;
      *) die "start which cluster node? cluster-cassandra-<n> or cluster-kafka-<n>, not $name" ;;
    esac
  done
  for name in "$@"; do
    case "$name" in
      cluster-cassandra-*) await_cassandra "$name" ;;
      cluster-kafka-*) await_cluster_kafka "${name#cluster-kafka-}" ;;
    esac
  done
}
