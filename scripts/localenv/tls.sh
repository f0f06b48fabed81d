# shellcheck shell=bash
# TLS for the local Cassandra and Kafka: a throwaway CA and one server certificate for 127.0.0.1,
# localhost and the node's bridge address (where pods reach the servers), so that the clients' TLS (and
# hostname checks) and Kafka's SASL run against real servers, from this machine and from pods.
# Cassandra accepts TLS and plain clients on the same port (`optional: true`); Kafka has a SASL_SSL
# listener beside its PLAINTEXT one.

TLS_DIR="$LOCALENV_STATE/tls"
# The SASL/PLAIN user the tests and examples use on the SASL_SSL listener.
: "${KAFKA_SASL_USERNAME:=sink}"
: "${KAFKA_SASL_PASSWORD:=sink-secret}"

# The server certificate's names; a certificate made for other names is made again (same CA), and the
# servers, whose configuration carries its fingerprint, restart with it.
server_tls_names() { printf 'subjectAltName=IP:127.0.0.1,IP:%s,DNS:localhost\n' "$NODE_ADDRESS"; }

ensure_server_tls() {
  if [ -f "$TLS_DIR/server.pem" ] && grep -qxF "$(server_tls_names)" "$TLS_DIR/server.ext" 2>/dev/null; then return; fi
  say "creating a server certificate for 127.0.0.1 and $NODE_ADDRESS in $TLS_DIR"
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    [ -f ca.crt ] || openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localenv-servers-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    { server_tls_names; printf 'extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n'; } >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.crt 2>/dev/null
    # Cassandra's and Kafka's PEM key stores: an unencrypted PKCS#8 key, then the certificate.
    openssl pkcs8 -topk8 -nocrypt -in server.key -out server.pkcs8.key
    cat server.pkcs8.key server.crt >server.pem
    chmod 600 ca.key server.key server.pkcs8.key server.pem
  ) || die "openssl failed to create the local TLS material"
}

# A line for the servers' configuration files that changes with the certificate.
server_tls_fingerprint() { openssl x509 -in "$TLS_DIR/server.crt" -noout -fingerprint -sha256 | cut -d= -f2; }
