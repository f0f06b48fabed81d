# Apache Cassandra from Maven Central jars on Java 17. Sourced by localenv.sh. Two single-node
# clusters run from the same jars: `cassandra`, open to anyone (the tests' default), and
# `cassandra-auth`, which requires a password (PasswordAuthenticator, default superuser
# cassandra/cassandra), for the tests of credentials.

CASSANDRA_HOME="$LOCALENV_CACHE/cassandra-$CASSANDRA_VERSION"

# cassandra_instance NAME: the settings of one node, in CASS_* variables. The nodes of the local
# cluster (cluster-cassandra-<n>, scripts/localenv/cluster.sh) are described there.
cassandra_instance() {
  CASS_NAME=$1
  CASS_DIR="$LOCALENV_STATE/$1"
  CASS_ADDRESS=127.0.0.1 CASS_SEEDS="" CASS_SNITCH=SimpleSnitch CASS_DC="" CASS_JOINS=true CASS_JMX_PORT=""
  case "$1" in
    cassandra)
      CASS_PORT=$CASSANDRA_PORT CASS_STORAGE_PORT=$CASSANDRA_STORAGE_PORT
      CASS_HEAP=$CASSANDRA_HEAP CASS_AUTHENTICATOR=AllowAllAuthenticator CASS_CLUSTER=localenv
      CASS_JMX_PORT=$CASSANDRA_JMX_PORT
      ;;
    cassandra-auth)
      CASS_PORT=$CASSANDRA_AUTH_PORT CASS_STORAGE_PORT=$CASSANDRA_AUTH_STORAGE_PORT
      CASS_HEAP=$CASSANDRA_AUTH_HEAP CASS_AUTHENTICATOR=PasswordAuthenticator
      CASS_CLUSTER=localenv-auth
      ;;
    cluster-cassandra-*) cluster_cassandra_instance "${1#cluster-cassandra-}" ;;
    *) die "no Cassandra node called $1" ;;
  esac
  [ -n "$CASS_SEEDS" ] || CASS_SEEDS="$CASS_ADDRESS:$CASS_STORAGE_PORT"
}

# Resolve cassandra-all and everything it needs into one lib folder with Maven (the only client that
# reaches Maven Central here). A marker file makes a warm run skip Maven entirely.
install_cassandra() {
  [ -f "$CASSANDRA_HOME/.complete" ] && return
  say "downloading Cassandra $CASSANDRA_VERSION from Maven Central (first run only)"
  mkdir -p "$CASSANDRA_HOME"
  cat >"$CASSANDRA_HOME/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>localenv.invalid</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$CASSANDRA_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  mvn -q -B -f "$CASSANDRA_HOME/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$CASSANDRA_HOME/lib" -DincludeScope=runtime ||
    die "Maven could not resolve org.apache.cassandra:cassandra-all:$CASSANDRA_VERSION"
  touch "$CASSANDRA_HOME/.complete"
}

# The address Cassandra advertises to clients: the node's bridge address while it exists here, for
# pods cannot reach this machine's loopback; 127.0.0.1 otherwise.
cassandra_advertised_address() {
  if ip -o -4 addr show 2>/dev/null | grep -q " inet $NODE_ADDRESS/"; then
    echo "$NODE_ADDRESS"
  else
    echo 127.0.0.1
  fi
}

# The client-facing addresses of a node. The single nodes: clients on this machine connect at
# 127.0.0.1, pods on the node's bridge at $NODE_ADDRESS, and drivers then use the address the node
# advertises, so while the bridge exists (scripts/localenv.sh up --node makes it before the servers
# start) that is the bridge address, which this machine reaches too. A cluster node: its own address.
cassandra_client_addresses() {
  if [ "$CASS_ADDRESS" = 127.0.0.1 ]; then
    printf 'rpc_address: 0.0.0.0\nbroadcast_rpc_address: %s\n' "$(cassandra_advertised_address)"
  else
    printf 'rpc_address: %s\n' "$CASS_ADDRESS"
  fi
}

write_cassandra_config() {
  mkdir -p "$CASS_DIR/data" "$CASS_DIR/logs"
  cat >"$CASS_DIR/cassandra.yaml" <<EOF
# server certificate $(server_tls_fingerprint)
# durable system tables (no -Dcassandra.unsafesystem): a kill -9 keeps the keyspaces and tables made
cluster_name: $CASS_CLUSTER
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: $CASS_SNITCH
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$CASS_SEEDS"
listen_address: $CASS_ADDRESS
$(cassandra_client_addresses)
# A node of a new cluster takes its tokens without streaming (there is no data yet), so every node of
# the local cluster can start at once.
auto_bootstrap: false
storage_port: $CASS_STORAGE_PORT
native_transport_port: $CASS_PORT
start_native_transport: true
commitlog_sync: periodic
commitlog_sync_period: 10000ms
auto_snapshot: false
authenticator: $CASS_AUTHENTICATOR
authorizer: AllowAllAuthorizer
client_encryption_options:
  enabled: true
  optional: true
  ssl_context_factory:
    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory
  keystore: $TLS_DIR/server.pem
EOF
  if [ -n "$CASS_DC" ]; then
    printf 'dc=%s\nrack=rack1\n' "$CASS_DC" >"$CASS_DIR/cassandra-rackdc.properties"
  fi
  # Logback: a file of our own at INFO, so a failure can be diagnosed from the tail of the log.
  cat >"$CASS_DIR/logback.xml" <<'EOF'
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
EOF
}

cassandra_ready() {
  # The node logs this line once the native protocol accepts clients, after schema and system keyspaces
  # are loaded; the open port alone comes a moment earlier.
  port_open "$CASS_PORT" "$CASS_ADDRESS" &&
    grep -q "Starting listening for CQL clients" "$LOG_DIR/$CASS_NAME.log" 2>/dev/null
}

# java17_module_flags ARRAY: append to the named array the Java 17 module flags of Cassandra's own
# conf/jvm17-server.options, which its server and its tools (nodetool) both need.
java17_module_flags() {
  local -n flags=$1
  local exports="java.base/jdk.internal.misc java.management.rmi/com.sun.jmx.remote.internal.rmi
    java.rmi/sun.rmi.registry java.rmi/sun.rmi.server java.sql/java.sql java.base/java.lang.ref
    jdk.unsupported/sun.misc"
  local opens="java.base/java.lang.module java.base/jdk.internal.loader java.base/jdk.internal.ref
    java.base/jdk.internal.reflect java.base/jdk.internal.math java.base/jdk.internal.module
    java.base/jdk.internal.util.jar jdk.management/com.sun.management.internal java.base/sun.nio.ch
    java.base/java.io java.base/java.lang.reflect java.base/java.lang java.base/java.util java.base/java.nio"
  local m
  for m in $exports; do flags+=(--add-exports "$m=ALL-UNNAMED"); done
  for m in $opens; do flags+=(--add-opens "$m=ALL-UNNAMED"); done
}

# launch_cassandra NAME: start the node unless it already runs with the same configuration; does not
# wait (see await_cassandra), so both nodes and the other servers start side by side.
launch_cassandra() {
  cassandra_instance "$1"
  ensure_server_tls
  # The configuration is rewritten on every start; a running server whose configuration changed (a
  # newer checkout) is restarted so that it matches.
  # The JMX port is set on the command line, so it is kept beside the configuration and compared too.
  local before=""
  [ -f "$CASS_DIR/cassandra.yaml" ] && before=$(cat "$CASS_DIR/cassandra.yaml" "$CASS_DIR/jmx-port" 2>/dev/null || true)
  write_cassandra_config
  printf '%s\n' "$CASS_JMX_PORT" >"$CASS_DIR/jmx-port"
  if running "$CASS_NAME" && cassandra_ready; then
    if [ "$before" = "$(cat "$CASS_DIR/cassandra.yaml" "$CASS_DIR/jmx-port")" ]; then say "$CASS_NAME already up on $CASS_ADDRESS:$CASS_PORT"; return; fi
    say "$CASS_NAME's configuration changed: restarting it"
    stop_process "$CASS_NAME"
  fi
  running "$CASS_NAME" && return
  port_open "$CASS_PORT" "$CASS_ADDRESS" && die "$CASS_ADDRESS:$CASS_PORT is taken by a process this script did not start"
  say "starting Cassandra $CASSANDRA_VERSION ($CASS_NAME, $CASS_AUTHENTICATOR${CASS_DC:+, $CASS_DC}) on $CASS_ADDRESS:$CASS_PORT"
  local args=()
  java17_module_flags args
  # Cassandra binds a local JMX port to loopback only.
  [ -n "$CASS_JMX_PORT" ] && args+=("-Dcassandra.jmx.local.port=$CASS_JMX_PORT")
  start_process "$CASS_NAME" "${JAVA17:-java}" "${args[@]}" \
    "-Xms$CASS_HEAP" "-Xmx$CASS_HEAP" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Xss512k \
    -Djdk.attach.allowAttachSelf=true -Dio.netty.tryReflectionSetAccessible=true \
    "-Dcassandra.config=file://$CASS_DIR/cassandra.yaml" -Dcassandra-foreground=yes \
    "-Dcassandra.storagedir=$CASS_DIR/data" "-Dcassandra.logdir=$CASS_DIR/logs" \
    "-Dlogback.configurationFile=$CASS_DIR/logback.xml" \
    "-Dcassandra-rackdc.properties=file://$CASS_DIR/cassandra-rackdc.properties" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=0 \
    -Dcassandra.superuser_setup_delay_ms=0 -Dchronicle.analytics.disable=true \
    -cp "$CASSANDRA_HOME/lib/*" org.apache.cassandra.service.CassandraDaemon
}

# nodetool ARGS...: Cassandra's nodetool against the `cassandra` node, over its loopback JMX port.
nodetool() {
  port_open "$CASSANDRA_JMX_PORT" 127.0.0.1 || die "no JMX on 127.0.0.1:$CASSANDRA_JMX_PORT: scripts/localenv.sh start cassandra"
  local args=()
  java17_module_flags args
  # Without a logback file of its own the tool prints its libraries' DEBUG lines.
  printf '%s\n' '<configuration><root level="WARN"/></configuration>' >"$LOCALENV_STATE/nodetool-logback.xml"
  "${JAVA17:-java}" "${args[@]}" -Xmx128m "-Dlogback.configurationFile=$LOCALENV_STATE/nodetool-logback.xml" -cp "$CASSANDRA_HOME/lib/*" org.apache.cassandra.tools.NodeTool \
    -h 127.0.0.1 -p "$CASSANDRA_JMX_PORT" "$@"
}

# await_cassandra NAME: wait until the node accepts clients.
await_cassandra() {
  cassandra_instance "$1"
  wait_ready "$CASS_NAME" cassandra_ready
}

start_cassandra() {
  launch_cassandra "${1:-cassandra}"
  await_cassandra "${1:-cassandra}"
}
