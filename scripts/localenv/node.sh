# shellcheck shell=bash
# A one-node Kubernetes cluster on this machine, for the end-to-end tests that need real pods: its own
# etcd and kube-apiserver (own ports and certificates, ServiceAccount tokens on, Node authorizer), a
# kubelet on containerd + runc with a bridge CNI network, kube-scheduler and kube-controller-manager.
# Nothing is pulled: the pause image is built here from images/pause, the project's images are
# imported (node_import_image). Sourced by localenv.sh.
#
# Network rule: pods reach this machine only through the bridge address NODE_ADDRESS (where Cassandra
# and Kafka also listen for them) and the API server's Service IP, which is NATed to the node's API
# server on loopback. Everything else is fenced before any pod runs, and every fence, route, chain,
# mount, cgroup and process made here is removed by node_down:
# - a blackhole route over the Service range, so no Service IP leads anywhere but the API server's;
# - a FORWARD chain that drops whatever comes from or goes to the pod range except pod-to-pod
#   (ip_forward is left as it is: with it on, this chain is what keeps pods in);
# - containerd and everything it starts run in a cgroup whose outgoing traffic may only go to
#   loopback, and containerd's proxy settings point at a dead loopback port, so an image pull fails
#   here instead of leaving the machine;
# - pods get a resolv.conf whose only name server is their own loopback: no DNS query leaves a pod.

: "${NODE_NAME:=csink-node}"
: "${NODE_BRIDGE:=csink0}"
: "${NODE_POD_CIDR:=10.244.0.0/24}"
: "${NODE_SERVICE_CIDR:=10.96.0.0/16}"
: "${NODE_API_SERVICE_IP:=10.96.0.1}"
: "${NODE_ETCD_PORT:=12379}"
: "${NODE_ETCD_PEER_PORT:=12380}"
: "${NODE_APISERVER_PORT:=16443}"
: "${NODE_KUBELET_PORT:=10250}"
: "${NODE_KUBELET_HEALTHZ_PORT:=10248}"
: "${NODE_SCHEDULER_PORT:=10259}"
: "${NODE_CONTROLLER_MANAGER_PORT:=10257}"

NODE_DIR="$LOCALENV_STATE/node"
NODE_PKI="$NODE_DIR/pki"
NODE_KUBECONFIG="$NODE_DIR/kubeconfig"
NODE_SOCKET="$NODE_DIR/containerd/containerd.sock"
NODE_CGROUP=cassandra-sink-node
NODE_PAUSE_IMAGE="localhost/cassandra-sink/pause:1"
NODE_COMMANDS="kubelet kube-scheduler kube-controller-manager"
# Debian packages of the node: the container runtime, the OCI runtime, the CNI plugins, and the
# iptables and conntrack the fences and the kubelet use.
NODE_APT_PACKAGES="containerd runc containernetworking-plugins iptables conntrack"
# Host sysctls the kubelet sets on start (its "kernel tunables"); node_down puts them back.
NODE_SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
# Host folders the kubelet, containerd and the CNI plugins write to whatever they are told; the ones
# that did not exist before the node are removed by node_down.
NODE_HOST_PATHS="/var/log/containers /var/log/pods /var/lib/cni /run/containerd /usr/libexec/kubernetes /var/lib/kubelet /etc/kubernetes"

ctr_node() { ctr --address "$NODE_SOCKET" "$@"; }
kubectl_node() { "$BIN_DIR/kubectl-$KUBE_VERSION" --kubeconfig "$NODE_KUBECONFIG" "$@"; }

# What a machine needs to run the node; prints each missing part and fails when one is.
node_missing() {
  local missing=()
  [ "$(id -u)" -eq 0 ] || missing+=("root (the node makes a bridge, routes, iptables chains, mounts and cgroups)")
  [ -d /sys/fs/cgroup/memory ] || [ -f /sys/fs/cgroup/cgroup.controllers ] || missing+=("cgroups (/sys/fs/cgroup)")
  [ -d /sys/fs/cgroup/unified ] || [ -f /sys/fs/cgroup/cgroup.controllers ] ||
    missing+=("a cgroup v2 hierarchy (/sys/fs/cgroup/unified), for containerd's egress fence")
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || missing+=("the overlay file system")
  ip link add csink-probe0 type bridge 2>/dev/null && ip link del csink-probe0 || missing+=("bridge interfaces (ip link add type bridge)")
  [ ${#NODE_SOCKET} -lt 100 ] || missing+=("a shorter LOCALENV_STATE: $NODE_SOCKET is too long for a Unix socket")
  if [ ${#missing[@]} -gt 0 ]; then
    printf '\033[31m[localenv] this machine cannot run the Kubernetes node; missing:\033[0m\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    return 1
  fi
}

node_install() {
  node_missing || exit 1
  local missing="" pkg
  for pkg in $NODE_APT_PACKAGES; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done
  if [ -n "$missing" ]; then
    say "installing Debian packages for the node:$missing"
    apt-get update -qq >/dev/null
    # The package would start containerd as a system service on some machines: the node runs its own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
      die "apt-get could not install:$missing"
  fi
  build_kube $NODE_COMMANDS
  node_build_pause_image
}

# The sandbox image every pod starts with, built from images/pause (static, no registry).
node_build_pause_image() {
  local source="$LOCALENV_ROOT/images/pause" out="$LOCALENV_CACHE/images"
  local digest
  digest=$(cat "$source/go.mod" "$source/main.go" | sha256sum | cut -c1-12)
  NODE_PAUSE_ARCHIVE="$out/pause-$digest.oci.tar"
  [ -f "$NODE_PAUSE_ARCHIVE" ] && return
  say "building the pause image from images/pause"
  mkdir -p "$out/pause-build"
  (cd "$source" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/pause-build/pause" .) ||
    die "go build of images/pause failed"
  python3 "$LOCALENV_ROOT/scripts/oci_image.py" "$out/pause-build/pause" "$NODE_PAUSE_IMAGE" \
    "$NODE_PAUSE_ARCHIVE.tmp" >/dev/null || die "packing the pause image failed"
  mv "$NODE_PAUSE_ARCHIVE.tmp" "$NODE_PAUSE_ARCHIVE"
}

# Remembers, once per node lifetime, what the host had before the node touched it.
node_record_host() {
  [ -f "$NODE_DIR/host/recorded" ] && return
  mkdir -p "$NODE_DIR/host"
  local name path
  for name in $NODE_SYSCTLS; do printf '%s=%s\n' "$name" "$(sysctl -n "$name")"; done >"$NODE_DIR/host/sysctls"
  for path in $NODE_HOST_PATHS; do [ -e "$path" ] || echo "$path"; done >"$NODE_DIR/host/new-paths"
  for table in filter nat mangle; do
    iptables -t "$table" -S 2>/dev/null | awk -v t="$table" '/^-N KUBE-/ {print t, $2}'
  done >"$NODE_DIR/host/kube-chains"
  touch "$NODE_DIR/host/recorded"
}

# The fences and the pods' bridge, before anything can start a pod. Idempotent.
node_network_up() {
  ip route show type blackhole | grep -q "^blackhole $NODE_SERVICE_CIDR" ||
    ip route add blackhole "$NODE_SERVICE_CIDR"
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
    ip addr add "$NODE_ADDRESS/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE"
  fi
  ip link set "$NODE_BRIDGE" up
  if ! iptables -S CSINK-FORWARD >/dev/null 2>&1; then
    iptables -N CSINK-FORWARD
    iptables -A CSINK-FORWARD -s "$NODE_POD_CIDR" -d "$NODE_POD_CIDR" -j RETURN
    iptables -A CSINK-FORWARD -s "$NODE_POD_CIDR" -j DROP
    iptables -A CSINK-FORWARD -d "$NODE_POD_CIDR" -j DROP
    iptables -I FORWARD 1 -j CSINK-FORWARD
  fi
  # containerd and everything it starts: loopback only.
  mkdir -p "/sys/fs/cgroup/unified/$NODE_CGROUP"
  if ! iptables -S CSINK-EGRESS >/dev/null 2>&1; then
    iptables -N CSINK-EGRESS
    iptables -A CSINK-EGRESS -d 127.0.0.0/8 -j RETURN
    iptables -A CSINK-EGRESS -j REJECT
    iptables -I OUTPUT 1 -m cgroup --path "$NODE_CGROUP" -j CSINK-EGRESS
  fi
  # In-cluster clients find the API server at the Service IP of `kubernetes`; it has no endpoints
  # here (the API server will not advertise a loopback address), so NAT sends it to loopback.
  sysctl -qw "net.ipv4.conf.$NODE_BRIDGE.route_localnet=1"
  if ! iptables -t nat -S CSINK-API >/dev/null 2>&1; then
    iptables -t nat -N CSINK-API
    iptables -t nat -A CSINK-API -d "$NODE_API_SERVICE_IP/32" -p tcp --dport 443 \
      -j DNAT --to-destination "127.0.0.1:$NODE_APISERVER_PORT"
    iptables -t nat -I PREROUTING 1 -i "$NODE_BRIDGE" -j CSINK-API
    iptables -t nat -I OUTPUT 1 -d "$NODE_API_SERVICE_IP/32" -j CSINK-API
  fi
  # A route past the blackhole for the API Service IP, so a connect() from the host reaches the
  # OUTPUT NAT; a packet that escaped it would only land on the pods' own bridge.
  ip route show "$NODE_API_SERVICE_IP/32" | grep -q . ||
    ip route add "$NODE_API_SERVICE_IP/32" dev "$NODE_BRIDGE"
}

node_network_down() {
  ip route del "$NODE_API_SERVICE_IP/32" dev "$NODE_BRIDGE" 2>/dev/null
  iptables -t nat -D PREROUTING -i "$NODE_BRIDGE" -j CSINK-API 2>/dev/null
  iptables -t nat -D OUTPUT -d "$NODE_API_SERVICE_IP/32" -j CSINK-API 2>/dev/null
  iptables -t nat -F CSINK-API 2>/dev/null && iptables -t nat -X CSINK-API
  iptables -D OUTPUT -m cgroup --path "$NODE_CGROUP" -j CSINK-EGRESS 2>/dev/null
  iptables -F CSINK-EGRESS 2>/dev/null && iptables -X CSINK-EGRESS
  iptables -D FORWARD -j CSINK-FORWARD 2>/dev/null
  iptables -F CSINK-FORWARD 2>/dev/null && iptables -X CSINK-FORWARD
  node_remove_kubelet_chains
  local veth
  for veth in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$veth" 2>/dev/null
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null
  ip route del blackhole "$NODE_SERVICE_CIDR" 2>/dev/null
  rmdir "/sys/fs/cgroup/unified/$NODE_CGROUP" 2>/dev/null
  return 0
}

# The kubelet makes KUBE-IPTABLES-HINT, KUBE-FIREWALL and KUBE-KUBELET-CANARY chains and jumps to them;
# those it made (not there before the node) go, with every rule that jumps to them.
node_remove_kubelet_chains() {
  local table chain rule
  for table in filter nat mangle; do
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/ {print $2}'); do
      grep -qx "$table $chain" "$NODE_DIR/host/kube-chains" 2>/dev/null && continue
      iptables -t "$table" -S 2>/dev/null | grep -E -- "-j $chain( |\$)" | sed 's/^-A /-D /' |
        while read -r rule; do eval "iptables -t $table $rule"; done
      iptables -t "$table" -F "$chain"
      iptables -t "$table" -X "$chain"
    done
  done
}

containerd_ready() { ctr_node version; }

node_start_containerd() {
  if running containerd && containerd_ready >/dev/null 2>&1; then return; fi
  mkdir -p "$NODE_DIR/containerd" "$NODE_DIR/cni/net.d"
  cat >"$NODE_DIR/containerd/config.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$NODE_SOCKET"
[ttrpc]
  address = "$NODE_SOCKET.ttrpc"
[debug]
  address = "$NODE_DIR/containerd/debug.sock"
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # Root here may lack CAP_SYS_RESOURCE, and runc then fails every container that asks for a
  # negative oom_score_adj ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
EOF
  # A bridge, host-local addresses and no gateway or masquerading: pods reach each other and the host's
  # bridge address, nothing else.
  cat >"$NODE_DIR/cni/net.d/10-cassandra-sink.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "cassandra-sink-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_ADDRESS"}]],
        "routes": [{"dst": "0.0.0.0/0", "gw": "$NODE_ADDRESS"}],
        "dataDir": "$NODE_DIR/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  say "starting containerd (own root and socket, egress fenced to loopback)"
  # Started inside the fenced cgroup, so that it is fenced from its first instruction.
  start_process containerd sh -c 'echo $$ >"$1" && shift && exec "$@"' sh \
    "/sys/fs/cgroup/unified/$NODE_CGROUP/cgroup.procs" \
    env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9 \
    https_proxy=http://127.0.0.1:9 NO_PROXY= no_proxy= \
    containerd --config "$NODE_DIR/containerd/config.toml"
  wait_ready containerd containerd_ready
}

# node_import_image ARCHIVE: imports an OCI archive into the node's image store, under its own name
# and, for a name without a registry, under the docker.io/library/ name the CRI resolves it to.
node_import_image() {
  local archive=$1 name
  name=$(tar -xOf "$archive" index.json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["annotations"]["io.containerd.image.name"])')
  ctr_node -n k8s.io images import --no-unpack=false "$archive" >/dev/null ||
    die "importing $archive into the node's containerd failed"
  # A first path component with a dot or a colon, or `localhost`, is a registry; without one the CRI
  # reads the name as Docker Hub's.
  local registry=""
  [[ "$name" == */* ]] && registry=${name%%/*}
  case "$registry" in
    *.* | *:* | localhost) ;;
    *)
      local full="docker.io/library/$name"
      [ -n "$registry" ] && full="docker.io/$name"
      ctr_node -n k8s.io images tag --force "$name" "$full" >/dev/null
      ;;
  esac
  say "image $name imported into the node"
}

node_certificates() {
  make_pki "$NODE_PKI"
  issue_client_cert "$NODE_PKI" node "/O=system:nodes/CN=system:node:$NODE_NAME"
  issue_client_cert "$NODE_PKI" scheduler "/CN=system:kube-scheduler"
  issue_client_cert "$NODE_PKI" controller-manager "/CN=system:kube-controller-manager"
  issue_client_cert "$NODE_PKI" apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  write_kubeconfig "$NODE_KUBECONFIG" "$NODE_APISERVER_PORT" "$NODE_PKI" admin
  local user
  for user in node scheduler controller-manager; do
    write_kubeconfig "$NODE_DIR/$user.kubeconfig" "$NODE_APISERVER_PORT" "$NODE_PKI" "$user"
  done
}

node_start_control_plane() {
  launch_etcd node-etcd "$NODE_ETCD_PORT" "$NODE_ETCD_PEER_PORT"
  # The kubelet is reached at the node's InternalIP (the bridge address), never by host name.
  launch_apiserver node-apiserver "$NODE_APISERVER_PORT" "$NODE_ETCD_PORT" "$NODE_PKI" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --kubelet-preferred-address-types InternalIP \
    --kubelet-client-certificate "$NODE_PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$NODE_PKI/apiserver-kubelet-client.key"
}

kubelet_ready() { kubectl_node get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True; }

node_start_kubelet() {
  if running kubelet && kubelet_ready >/dev/null 2>&1; then return; fi
  mkdir -p "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs"
  # Pods resolve names only through their own loopback, where nothing answers: no query leaves them.
  printf 'nameserver 127.0.0.1\noptions ndots:1 attempts:1 timeout:1\n' >"$NODE_DIR/resolv.conf"
  cat >"$NODE_DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroupfs, and cgroup v1 accepted (1.34 only warns; a v1 host is common on these machines).
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$NODE_SOCKET
address: $NODE_ADDRESS
port: $NODE_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $NODE_KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $NODE_PKI/ca.crt}
authorization:
  mode: Webhook
podCIDR: $NODE_POD_CIDR
podLogsDir: $NODE_DIR/pod-logs
resolvConf: $NODE_DIR/resolv.conf
clusterDomain: cluster.local
failSwapOn: false
# This machine is shared with the servers and builds: no evictions for disk or memory pressure.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
registerNode: true
maxPods: 60
EOF
  say "starting the kubelet (node $NODE_NAME at $NODE_ADDRESS)"
  start_process kubelet "$BIN_DIR/kubelet-$KUBE_VERSION" --config "$NODE_DIR/kubelet/config.yaml" \
    --kubeconfig "$NODE_DIR/node.kubeconfig" --root-dir "$NODE_DIR/kubelet/root" \
    --cert-dir "$NODE_DIR/kubelet/pki" --node-ip "$NODE_ADDRESS" --hostname-override "$NODE_NAME" \
    --volume-plugin-dir "$NODE_DIR/kubelet/volume-plugins"
  wait_ready kubelet kubelet_ready
}

# The controller-manager has made the `default` ServiceAccount and published the cluster CA into
# `default`: pods can be admitted and get their token volume.
controllers_ready() {
  kubectl_node -n default get serviceaccount default && kubectl_node -n default get configmap kube-root-ca.crt
}
scheduler_ready() { curl -fsSk "https://127.0.0.1:$NODE_SCHEDULER_PORT/healthz" | grep -qx ok; }

node_start_controllers() {
  if ! running kube-scheduler; then
    say "starting kube-scheduler"
    start_process kube-scheduler "$BIN_DIR/kube-scheduler-$KUBE_VERSION" \
      --kubeconfig "$NODE_DIR/scheduler.kubeconfig" \
      --authentication-kubeconfig "$NODE_DIR/scheduler.kubeconfig" \
      --authorization-kubeconfig "$NODE_DIR/scheduler.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$NODE_SCHEDULER_PORT" --leader-elect=false
  fi
  if ! running kube-controller-manager; then
    say "starting kube-controller-manager"
    start_process kube-controller-manager "$BIN_DIR/kube-controller-manager-$KUBE_VERSION" \
      --kubeconfig "$NODE_DIR/controller-manager.kubeconfig" \
      --authentication-kubeconfig "$NODE_DIR/controller-manager.kubeconfig" \
      --authorization-kubeconfig "$NODE_DIR/controller-manager.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$NODE_CONTROLLER_MANAGER_PORT" --leader-elect=false \
      --use-service-account-credentials=true --service-account-private-key-file "$NODE_PKI/sa.key" \
      --root-ca-file "$NODE_PKI/ca.crt" --controllers='*' --cluster-name cassandra-sink-node
  fi
  wait_ready kube-scheduler scheduler_ready
  wait_ready kube-controller-manager controllers_ready
}

# What the host needs before anything of the node runs: a record of what it had, then the bridge and
# the fences.
node_prepare_host() {
  mkdir -p "$NODE_DIR"
  node_record_host
  node_network_up
}

node_up() {
  local started=$SECONDS
  node_install
  node_prepare_host
  node_certificates
  node_start_control_plane
  node_start_containerd
  node_import_image "$NODE_PAUSE_ARCHIVE"
  node_start_kubelet
  node_start_controllers
  say "node $NODE_NAME ready in $((SECONDS - started))s; KUBECONFIG=$NODE_KUBECONFIG"
}

# Stops the node and undoes what node_up did to the host. The node's API objects (its etcd) are kept:
# the next node_up starts their pods again. Every step is tried whatever the one before it did (a
# part may be down already), so the host is put back as far as it can be.
node_down() {
  [ -d "$NODE_DIR" ] || return 0
  (
    set +e
    node_teardown
  )
}

node_teardown() {
  stop_process kube-controller-manager
  stop_process kube-scheduler
  stop_process kubelet
  if running containerd; then
    local task container
    for task in $(ctr_node -n k8s.io tasks ls -q 2>/dev/null); do
      ctr_node -n k8s.io tasks kill -s SIGKILL "$task" >/dev/null 2>&1
    done
    for task in $(ctr_node -n k8s.io tasks ls -q 2>/dev/null); do
      ctr_node -n k8s.io tasks delete -f "$task" >/dev/null 2>&1
    done
    for container in $(ctr_node -n k8s.io containers ls -q 2>/dev/null); do
      ctr_node -n k8s.io containers delete "$container" >/dev/null 2>&1
    done
  fi
  stop_process containerd
  # The runc shims outlive containerd by design; ours are the ones serving our socket.
  local shim
  for shim in $(pgrep -f "containerd-shim-runc-v2 .*-address $NODE_SOCKET( |\$)"); do kill -KILL "$shim" 2>/dev/null; done
  stop_process node-apiserver
  stop_process node-etcd
  # Pod sandboxes' mounts (rootfs, volumes, netns, shm) all live under the node's folder.
  local mount
  awk -v dir="$NODE_DIR/" 'index($2, dir) == 1 {print $2}' /proc/mounts | sort -r |
    while read -r mount; do umount -l "$mount" 2>/dev/null; done
  # Addresses handed to pods that no longer exist.
  rm -rf "$NODE_DIR/cni/ipam"
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
    [ -d "$hierarchy" ] && find "$hierarchy" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  node_network_down
  if [ -f "$NODE_DIR/host/recorded" ]; then
    local setting path
    while read -r setting; do sysctl -qw "$setting" 2>/dev/null; done <"$NODE_DIR/host/sysctls"
    while read -r path; do [ -n "$path" ] && rm -rf "$path"; done <"$NODE_DIR/host/new-paths"
    rm -rf "$NODE_DIR/host"
  fi
}

node_status() {
  local name
  for name in node-etcd node-apiserver containerd kubelet kube-scheduler kube-controller-manager; do
    if running "$name"; then
      printf '%-24s running  pid %-8s rss %5s MiB\n' "$name" "$(pid_of "$name")" "$(rss_mib "$name")"
    else
      printf '%-24s stopped\n' "$name"
    fi
  done
}

# Prints whatever of the node is still on the host (nothing after node_down) and fails when something
# is: its bridge, routes, chains, mounts, cgroup, processes.
node_leftovers() {
  local left=()
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && left+=("bridge $NODE_BRIDGE")
  ip route show type blackhole | grep -q "^blackhole $NODE_SERVICE_CIDR" && left+=("blackhole route $NODE_SERVICE_CIDR")
  ip route show "$NODE_API_SERVICE_IP/32" | grep -q . && left+=("route $NODE_API_SERVICE_IP/32")
  local table chain
  for table in filter nat; do
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N CSINK-/ {print $2}'); do
      left+=("iptables chain $table/$chain")
    done
  done
  grep -q " $NODE_DIR/" /proc/mounts && left+=("mounts under $NODE_DIR")
  [ -d "/sys/fs/cgroup/unified/$NODE_CGROUP" ] && left+=("cgroup $NODE_CGROUP")
  local name
  for name in node-etcd node-apiserver containerd kubelet kube-scheduler kube-controller-manager; do
    running "$name" && left+=("process $name ($(pid_of "$name"))")
  done
  pgrep -f "containerd-shim-runc-v2 .*-address $NODE_SOCKET( |\$)" >/dev/null && left+=("containerd shims")
  if [ ${#left[@]} -gt 0 ]; then
    printf '\033[31m[localenv] the node left behind:\033[0m\n' >&2
    printf '  - %s\n' "${left[@]}" >&2
    return 1
  fi
  say "nothing of the node is left on this machine"
}
