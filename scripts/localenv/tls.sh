# shellcheck shell=bash
# TLS for the local Cassandra and Kafka: a throwaway CA and one server certificate for 127.0.0.1 and
# localhost, so that the clients' TLS (and hostname checks) and Kafka's SASL run against real servers.
# Cassandra accepts TLS and plain clients on the same port (`optional: true`); Kafka has a SASL_SSL
# listener beside its PLAINTEXT one.

TLS_DIR="$LOCALENV_STATE/tls"
# The SASL/PLAIN user the tests and examples use on the SASL_SSL listener.
: "${KAFKA_SASL_USERNAME:=sink}"
: "${KAFKA_SASL_PASSWORD:=sink-secret}"

ensure_server_tls() {
  [ -f "$TLS_DIR/server.pem" ] && return
  say "creating a CA and a server certificate for 127.0.0.1 in $TLS_DIR"
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localenv-servers-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.crt 2>/dev/null
    # Cassandra's and Kafka's PEM key stores: an unencrypted PKCS#8 key, then the certificate.
    openssl pkcs8 -topk8 -nocrypt -in server.key -out server.pkcs8.key
    cat server.pkcs8.key server.crt >server.pem
    chmod 600 ca.key server.key server.pkcs8.key server.pem
  ) || die "openssl failed to create the local TLS material"
}
