# etcd and kube-apiserver built from Go modules, started on loopback with TLS. Sourced by localenv.sh.

KUBE_BUILD_DIR="$LOCALENV_CACHE/build/kube-$KUBE_VERSION"
ETCD_BUILD_DIR="$LOCALENV_CACHE/build/etcd-$ETCD_VERSION"
KUBE_PKI="$LOCALENV_STATE/pki"

# k8s.io/kubernetes replaces its staging modules with folders of its own repository, and `go install`
# refuses modules with replace lines. A small wrapper module pins each staging module to the published
# v0.<minor>.<patch> instead, the list derived from the kubernetes go.mod itself so it follows upgrades.
kube_wrapper_module() {
  [ -f "$KUBE_BUILD_DIR/.replaced" ] && return
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
  touch .replaced
  cd "$LOCALENV_ROOT" || exit 1
}

# build_kube [COMMAND...]: the named commands of k8s.io/kubernetes/cmd (kube-apiserver and kubectl when
# none are named) as BIN_DIR/COMMAND-KUBE_VERSION, each only when it is missing. The node's kubelet,
# scheduler and controller-manager are built the same way, only when a node is wanted.
build_kube() {
  local commands=${*:-kube-apiserver kubectl} missing="" command
  for command in $commands; do
    [ -x "$BIN_DIR/$command-$KUBE_VERSION" ] || missing="$missing $command"
  done
  [ -z "$missing" ] && return
  say "building$missing v$KUBE_VERSION from Go modules (first run only)"
  kube_wrapper_module
  cd "$KUBE_BUILD_DIR" || exit 1
  local tools=""
  for command in $missing; do tools="$tools k8s.io/kubernetes/cmd/$command@v$KUBE_VERSION"; done
  # shellcheck disable=SC2086
  go get -tool $tools || die "could not resolve$missing v$KUBE_VERSION from the Go module proxy"
  local major=${KUBE_VERSION%%.*} rest=${KUBE_VERSION#*.}
  local minor=${rest%%.*} flags="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags="$flags -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags="$flags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for command in $missing; do
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $flags" -o "$BIN_DIR/$command-$KUBE_VERSION.tmp" \
      "k8s.io/kubernetes/cmd/$command" || die "go build of $command v$KUBE_VERSION failed"
    mv "$BIN_DIR/$command-$KUBE_VERSION.tmp" "$BIN_DIR/$command-$KUBE_VERSION"
  done
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

# make_pki DIR: a throwaway CA that signs the API server's serving certificate and an admin client
# certificate (O=system:masters), and the service-account key pair that signs tokens. Made once per folder.
make_pki() {
  local dir=$1
  [ -f "$dir/admin.crt" ] && return
  mkdir -p "$dir"
  (
    cd "$dir" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localenv-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' >san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile san.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  ) || die "openssl failed to create the API server's certificates in $dir"
  issue_client_cert "$dir" admin "/O=system:masters/CN=localenv-admin"
}

# issue_client_cert DIR NAME SUBJECT: DIR/NAME.{crt,key}, a client certificate signed by DIR's CA, unless
# it exists. The API server reads the user from CN and the groups from O.
issue_client_cert() {
  local dir=$1 name=$2 subject=$3
  [ -f "$dir/$name.crt" ] && return
  (
    cd "$dir" || exit 1
    openssl req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$name.key" -out "$name.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile client.ext -out "$name.crt" 2>/dev/null
  ) || die "openssl failed to create the client certificate $dir/$name.crt"
}

# write_kubeconfig PATH PORT DIR USER: a kubeconfig for https://127.0.0.1:PORT as the client certificate
# DIR/USER.{crt,key}.
write_kubeconfig() {
  local path=$1 port=$2 dir=$3 user=$4
  cat >"$path" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: localenv
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$dir/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$dir/$user.crt")
    client-key-data: $(base64 -w0 "$dir/$user.key")
contexts:
- name: localenv
  context: { cluster: localenv, user: $user }
current-context: localenv
EOF
  chmod 600 "$path"
}

etcd_ready() { curl -fsS "http://127.0.0.1:$1/health" | grep -q '"health":"true"'; }

# launch_etcd NAME PORT PEER-PORT: one etcd with its data in LOCALENV_STATE/NAME, started unless it runs.
launch_etcd() {
  local name=$1 port=$2 peer=$3
  if running "$name" && etcd_ready "$port"; then say "$name already up on 127.0.0.1:$port"; return; fi
  port_open "$port" && die "port $port is taken by a process this script did not start"
  mkdir -p "$LOCALENV_STATE/$name"
  say "starting $name on 127.0.0.1:$port"
  start_process "$name" "$BIN_DIR/etcd-$ETCD_VERSION" --data-dir "$LOCALENV_STATE/$name" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "default=http://127.0.0.1:$peer" --unsafe-no-fsync --quota-backend-bytes 4294967296
  wait_ready "$name" etcd_ready "$port"
}

start_etcd() { launch_etcd etcd "$ETCD_PORT" "$ETCD_PEER_PORT"; }

apiserver_ready() {
  local port=$1 dir=$2
  curl -fsS --cacert "$dir/ca.crt" --cert "$dir/admin.crt" --key "$dir/admin.key" \
    "https://127.0.0.1:$port/readyz" | grep -q '^ok'
}

# launch_apiserver NAME PORT ETCD-PORT PKI-DIR [FLAG...]: one kube-apiserver on loopback, started unless
# it runs; the FLAGs are added to the common ones.
launch_apiserver() {
  local name=$1 port=$2 etcd=$3 dir=$4
  shift 4
  if running "$name" && apiserver_ready "$port" "$dir"; then
    say "$name already up on 127.0.0.1:$port"
    return
  fi
  port_open "$port" && die "port $port is taken by a process this script did not start"
  say "starting $name v$KUBE_VERSION on 127.0.0.1:$port"
  start_process "$name" "$BIN_DIR/kube-apiserver-$KUBE_VERSION" \
    --etcd-servers "http://127.0.0.1:$etcd" --bind-address 127.0.0.1 --secure-port "$port" \
    --advertise-address 127.0.0.1 \
    --tls-cert-file "$dir/apiserver.crt" --tls-private-key-file "$dir/apiserver.key" \
    --client-ca-file "$dir/ca.crt" --service-cluster-ip-range 10.96.0.0/16 \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
    --allow-privileged=true --enable-priority-and-fairness=false "$@"
  wait_ready "$name" apiserver_ready "$port" "$dir"
}

# The shared API server, for every test that needs no pods. No kubelet runs against it, so no pod ever
# needs a ServiceAccount token: the ServiceAccount admission plugin is off.
start_apiserver() {
  make_pki "$KUBE_PKI"
  write_kubeconfig "$KUBECONFIG_PATH" "$APISERVER_PORT" "$KUBE_PKI" admin
  launch_apiserver kube-apiserver "$APISERVER_PORT" "$ETCD_PORT" "$KUBE_PKI" \
    --authorization-mode RBAC --disable-admission-plugins ServiceAccount
}
