# etcd and kube-apiserver built from Go modules, started on loopback with TLS. Sourced by localenv.sh.

KUBE_BUILD_DIR="$LOCALENV_CACHE/build/kube-$KUBE_VERSION"
ETCD_BUILD_DIR="$LOCALENV_CACHE/build/etcd-$ETCD_VERSION"
KUBE_PKI="$LOCALENV_STATE/pki"

# k8s.io/kubernetes replaces its staging modules with folders of its own repository, and `go install`
# refuses modules with replace lines. A small wrapper module pins each staging module to the published
# v0.<minor>.<patch> instead, the list derived from the kubernetes go.mod itself so it follows upgrades.
build_kube() {
  local bin="$BIN_DIR/kube-apiserver-$KUBE_VERSION"
  if [ -x "$bin" ] && [ -x "$BIN_DIR/kubectl-$KUBE_VERSION" ]; then return; fi
  say "building kube-apiserver and kubectl v$KUBE_VERSION from Go modules (first run only)"
  local staging="v0.${KUBE_VERSION#*.}"
  rm -rf "$KUBE_BUILD_DIR" && mkdir -p "$KUBE_BUILD_DIR" && cd "$KUBE_BUILD_DIR" || exit 1
  go mod init localenv.invalid/kube >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@v$KUBE_VERSION from the Go module proxy"
  local module
  for module in $(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/.*#\1#p' "$gomod"); do
    go mod edit -replace "$module=$module@$staging"
  done
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$KUBE_VERSION" "k8s.io/kubernetes/cmd/kubectl@v$KUBE_VERSION"
  local major=${KUBE_VERSION%%.*} rest=${KUBE_VERSION#*.}
  local minor=${rest%%.*} flags="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags="$flags -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags="$flags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $flags" -o "$bin.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $flags" -o "$BIN_DIR/kubectl-$KUBE_VERSION" \
    k8s.io/kubernetes/cmd/kubectl
  mv "$bin.tmp" "$bin"
  cd "$LOCALENV_ROOT" || exit 1
}

build_etcd() {
  local bin="$BIN_DIR/etcd-$ETCD_VERSION"
  [ -x "$bin" ] && return
  say "building etcd v$ETCD_VERSION from Go modules (first run only)"
  rm -rf "$ETCD_BUILD_DIR" && mkdir -p "$ETCD_BUILD_DIR" && cd "$ETCD_BUILD_DIR" || exit 1
  go mod init localenv.invalid/etcd >/dev/null 2>&1
  go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin" go.etcd.io/etcd/server/v3
  cd "$LOCALENV_ROOT" || exit 1
}

# A throwaway CA signs the serving certificate and an admin client certificate (O=system:masters); the
# service-account key pair signs tokens. Made once per state folder.
make_pki() {
  [ -f "$KUBE_PKI/admin.crt" ] && return
  mkdir -p "$KUBE_PKI" && cd "$KUBE_PKI" || exit 1
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localenv-ca" \
    -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' >san.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile san.ext -out apiserver.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=localenv-admin" \
    -keyout admin.key -out admin.csr 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile client.ext -out admin.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cd "$LOCALENV_ROOT" || exit 1
}

write_kubeconfig() {
  cat >"$KUBECONFIG_PATH" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: localenv
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$KUBE_PKI/ca.crt")
users:
- name: localenv-admin
  user:
    client-certificate-data: $(base64 -w0 "$KUBE_PKI/admin.crt")
    client-key-data: $(base64 -w0 "$KUBE_PKI/admin.key")
contexts:
- name: localenv
  context: { cluster: localenv, user: localenv-admin }
current-context: localenv
EOF
  chmod 600 "$KUBECONFIG_PATH"
}

etcd_ready() { curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

start_etcd() {
  if running etcd && etcd_ready; then say "etcd already up on 127.0.0.1:$ETCD_PORT"; return; fi
  port_open "$ETCD_PORT" && die "port $ETCD_PORT is taken by a process this script did not start (set ETCD_PORT)"
  mkdir -p "$LOCALENV_STATE/etcd"
  say "starting etcd on 127.0.0.1:$ETCD_PORT"
  start_process etcd "$BIN_DIR/etcd-$ETCD_VERSION" --data-dir "$LOCALENV_STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes 4294967296
  wait_ready etcd etcd_ready
}

apiserver_ready() {
  curl -fsS --cacert "$KUBE_PKI/ca.crt" --cert "$KUBE_PKI/admin.crt" --key "$KUBE_PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" | grep -q '^ok'
}

start_apiserver() {
  make_pki
  write_kubeconfig
  if running kube-apiserver && apiserver_ready; then
    say "kube-apiserver already up on 127.0.0.1:$APISERVER_PORT"
    return
  fi
  port_open "$APISERVER_PORT" && die "port $APISERVER_PORT is taken by a process this script did not start (set APISERVER_PORT)"
  say "starting kube-apiserver v$KUBE_VERSION on 127.0.0.1:$APISERVER_PORT"
  start_process kube-apiserver "$BIN_DIR/kube-apiserver-$KUBE_VERSION" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --advertise-address 127.0.0.1 \
    --tls-cert-file "$KUBE_PKI/apiserver.crt" --tls-private-key-file "$KUBE_PKI/apiserver.key" \
    --client-ca-file "$KUBE_PKI/ca.crt" --authorization-mode RBAC \
    --service-cluster-ip-range 10.96.0.0/16 --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$KUBE_PKI/sa.pub" --service-account-signing-key-file "$KUBE_PKI/sa.key" \
    --allow-privileged=true --disable-admission-plugins ServiceAccount --enable-priority-and-fairness=false
  wait_ready kube-apiserver apiserver_ready
}
