# Apicurio Registry, the schema registry that Avro records name their schemas in: its Confluent-compatible
# API under /apis/ccompat/v7, schemas kept in memory. Sourced by localenv.sh.
#
# Maven Central publishes the registry as a library (apicurio-registry-app), not as a runnable server, so
# it is built here into one with Quarkus's Maven plugin (the Quarkus version the registry was released
# with). Two of its dependencies are not on Maven Central and are mended: the JSON Schema validator
# (everit, published on JitPack only) is left out, as only Avro schemas are registered here, and the
# config-index extension is taken at 0.1.10.Final, the release whose build-time half Maven Central has.

REGISTRY_HOME="$LOCALENV_CACHE/apicurio-registry-$REGISTRY_VERSION"

install_registry() {
  [ -f "$REGISTRY_HOME/.complete" ] && return
  say "building Apicurio Registry $REGISTRY_VERSION from Maven Central (first run only)"
  rm -rf "$REGISTRY_HOME"
  mkdir -p "$REGISTRY_HOME/src/main/resources"
  cat >"$REGISTRY_HOME/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>localenv.invalid</groupId>
  <artifactId>registry</artifactId>
  <version>1</version>
  <properties>
    <maven.compiler.release>17</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencyManagement>
    <dependencies>
      <dependency><groupId>io.quarkus</groupId><artifactId>quarkus-bom</artifactId><version>$REGISTRY_QUARKUS_VERSION</version><type>pom</type><scope>import</scope></dependency>
      <dependency><groupId>io.apicurio</groupId><artifactId>apicurio-common-app-components-config-index</artifactId><version>0.1.10.Final</version></dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>io.apicurio</groupId><artifactId>apicurio-registry-app</artifactId><version>$REGISTRY_VERSION</version>
      <exclusions><exclusion><groupId>com.github.everit-org.json-schema</groupId><artifactId>org.everit.json.schema</artifactId></exclusion></exclusions>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>io.quarkus</groupId><artifactId>quarkus-maven-plugin</artifactId><version>$REGISTRY_QUARKUS_VERSION</version>
        <executions><execution><goals><goal>build</goal></goals></execution></executions>
      </plugin>
    </plugins>
  </build>
</project>
EOF
  mvn -q -B -f "$REGISTRY_HOME/pom.xml" dependency:resolve >"$LOG_DIR/registry-build.log" 2>&1 ||
    { tail -n 20 "$LOG_DIR/registry-build.log" >&2; die "Maven could not resolve io.apicurio:apicurio-registry-app:$REGISTRY_VERSION"; }
  # The registry's own settings travel in its jar; a Quarkus build reads them from the application, so
  # they are copied in, with the lines that make Quarkus index the registry's classes as beans. The jar
  # is copied out of Maven's repository first, wherever that repository is configured to be.
  mvn -q -B -f "$REGISTRY_HOME/pom.xml" dependency:copy "-Dartifact=io.apicurio:apicurio-registry-app:$REGISTRY_VERSION" \
    "-DoutputDirectory=$REGISTRY_HOME" >>"$LOG_DIR/registry-build.log" 2>&1 ||
    { tail -n 20 "$LOG_DIR/registry-build.log" >&2; die "Maven could not copy io.apicurio:apicurio-registry-app:$REGISTRY_VERSION"; }
  local jar="$REGISTRY_HOME/apicurio-registry-app-$REGISTRY_VERSION.jar"
  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("application.properties"))' \
    "$jar" >"$REGISTRY_HOME/src/main/resources/application.properties" ||
    die "no application.properties in $jar"
  printf '\nquarkus.index-dependency.registry.group-id=io.apicurio\nquarkus.index-dependency.registry.artifact-id=apicurio-registry-app\n' \
    >>"$REGISTRY_HOME/src/main/resources/application.properties"
  mvn -q -B -f "$REGISTRY_HOME/pom.xml" package >>"$LOG_DIR/registry-build.log" 2>&1 ||
    { tail -n 20 "$LOG_DIR/registry-build.log" >&2; die "the Apicurio Registry build failed (log: $LOG_DIR/registry-build.log)"; }
  touch "$REGISTRY_HOME/.complete"
}

registry_ready() {
  curl -fsS "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7/subjects" >/dev/null
}

start_registry() {
  if running registry && registry_ready; then say "schema registry already up on 127.0.0.1:$REGISTRY_PORT"; return; fi
  port_open "$REGISTRY_PORT" && die "port $REGISTRY_PORT is taken by a process this script did not start (set REGISTRY_PORT)"
  say "starting Apicurio Registry $REGISTRY_VERSION on 127.0.0.1:$REGISTRY_PORT"
  start_process registry "${JAVA17:-java}" -Xms64m -Xmx256m \
    -Dquarkus.http.host=127.0.0.1 "-Dquarkus.http.port=$REGISTRY_PORT" \
    -jar "$REGISTRY_HOME/target/registry-1-runner.jar"
}

await_registry() {
  wait_ready registry registry_ready
}
