# Apache Kafka, one KRaft node (broker and controller in one process), from Maven Central jars.
# Sourced by localenv.sh.

KAFKA_HOME="$LOCALENV_CACHE/kafka-$KAFKA_VERSION"
KAFKA_DIR="$LOCALENV_STATE/kafka"

install_kafka() {
  [ -f "$KAFKA_HOME/.complete" ] && return
  say "downloading Kafka $KAFKA_VERSION from Maven Central (first run only)"
  mkdir -p "$KAFKA_HOME"
  # kafka_2.13 is the broker; kafka-tools carries TopicCommand and the console clients; log4j-slf4j2 and
  # log4j-core give the broker a logger (it ships none of its own as a library); slf4j-api 2 is named
  # explicitly because Maven's nearest-wins would otherwise pick the 1.7 that kafka-tools drags in.
  cat >"$KAFKA_HOME/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>localenv.invalid</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
  mvn -q -B -f "$KAFKA_HOME/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_HOME/lib" -DincludeScope=runtime ||
    die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
  touch "$KAFKA_HOME/.complete"
}

kafka_java() {
  "${JAVA17:-java}" -Xms256m -Xmx512m "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.properties" \
    -cp "$KAFKA_HOME/lib/*" "$@"
}

write_kafka_config() {
  mkdir -p "$KAFKA_DIR/data"
  local jaas="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" user_$KAFKA_SASL_USERNAME=\"$KAFKA_SASL_PASSWORD\";"
  # Two listeners for clients on this machine, two for pods on the node's bridge: a client is sent to
  # the addresses advertised by the listener it connected to, and a pod cannot reach 127.0.0.1.
  cat >"$KAFKA_DIR/server.properties" <<EOF
# server certificate $(server_tls_fingerprint)
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT,PODS://0.0.0.0:$KAFKA_POD_PORT,PODS_SASL_SSL://0.0.0.0:$KAFKA_POD_SASL_SSL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT,PODS://$NODE_ADDRESS:$KAFKA_POD_PORT,PODS_SASL_SSL://$NODE_ADDRESS:$KAFKA_POD_SASL_SSL_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,PODS:PLAINTEXT,PODS_SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=$jaas
listener.name.pods_sasl_ssl.plain.sasl.jaas.config=$jaas
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/server.pem
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
EOF
  write_kafka_log_config "$KAFKA_DIR"
}

# write_kafka_log_config DIR: the broker's own log at INFO, its libraries' at WARN.
write_kafka_log_config() {
  cat >"$1/log4j2.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
EOF
}

kafka_ready() {
  port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$LOG_DIR/kafka.log" 2>/dev/null
}

start_kafka() {
  ensure_server_tls
  # The configuration is rewritten on every start; a running server whose configuration changed (a
  # newer checkout) is restarted so that it matches.
  local before=""
  [ -f "$KAFKA_DIR/server.properties" ] && before=$(cat "$KAFKA_DIR/server.properties")
  write_kafka_config
  if running kafka && kafka_ready; then
    if [ "$before" = "$(cat "$KAFKA_DIR/server.properties")" ]; then say "Kafka already up on 127.0.0.1:$KAFKA_PORT"; return; fi
    say "Kafka's configuration changed: restarting it"
    stop_process kafka
  fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by a process this script did not start (set KAFKA_PORT)"
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    say "formatting Kafka storage (KRaft, standalone controller)"
    kafka_java kafka.tools.StorageTool format --standalone -t bG9jYWxlbnYtY2x1c3Rlcg \
      -c "$KAFKA_DIR/server.properties" >"$LOG_DIR/kafka-format.log" 2>&1 ||
      { tail -n 20 "$LOG_DIR/kafka-format.log" >&2; die "Kafka storage format failed"; }
  fi
  say "starting Kafka $KAFKA_VERSION (KRaft) on 127.0.0.1:$KAFKA_PORT"
  start_process kafka "${JAVA17:-java}" -Xms512m -Xmx512m \
    "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.properties" \
    -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$KAFKA_DIR/server.properties"
  wait_ready kafka kafka_ready
}
