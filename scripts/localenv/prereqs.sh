# Toolchains and system packages the servers and the Rust build need. Sourced by localenv.sh.

# Debian packages: OpenSSL headers and pkg-config for librdkafka's TLS/SASL (built by the rdkafka crate),
# zlib for its compression, openssl and curl for certificates and readiness checks, Lua for the tests
# of the Argo CD health check.
APT_PACKAGES="libssl-dev pkg-config zlib1g-dev openssl curl ca-certificates build-essential lua5.4"

ensure_prereqs() {
  local missing="" pkg
  for pkg in $APT_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    say "installing Debian packages:$missing"
    if [ "$(id -u)" -ne 0 ]; then die "need root (or sudo) to install:$missing"; fi
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null ||
      die "apt-get could not install:$missing"
  fi
  command -v go >/dev/null || die "Go is required to build etcd, kube-apiserver, kubectl, helm and kubeconform"
  command -v mvn >/dev/null || die "Maven is required to fetch Cassandra and Kafka from Maven Central"
  find_java17
}

# Cassandra 5.0 runs on Java 11 or 17 only (it installs a SecurityManager, which newer JDKs refuse).
find_java17() {
  [ -n "${JAVA17:-}" ] && return
  if java -version 2>&1 | grep -q 'version "17'; then
    JAVA17=$(command -v java)
  else
    JAVA17=$(ls -d /usr/lib/jvm/*17*/bin/java 2>/dev/null | head -n 1)
  fi
  [ -x "${JAVA17:-}" ] || die "Java 17 is required (Cassandra 5.0 does not run on newer JDKs); set JAVA17=/path/to/java"
  export JAVA17
}
