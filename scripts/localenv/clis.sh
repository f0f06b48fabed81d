# The CLIs: helm and kubeconform from Go modules (kubectl comes with kube-apiserver, see kube.sh), and
# offline Kubernetes JSON schemas for kubeconform. Sourced by localenv.sh.

KUBE_SCHEMA_VERSION="${KUBE_VERSION%.*}.0"
KUBE_SCHEMA_DIR="$LOCALENV_CACHE/kubernetes-json-schema/v$KUBE_SCHEMA_VERSION-local-strict"

build_helm() {
  local bin="$BIN_DIR/helm-$HELM_VERSION"
  [ -x "$bin" ] && return
  say "building helm v$HELM_VERSION from Go modules (first run only)"
  # Helm derives the Kubernetes version it assumes (for .Capabilities and `helm lint`) from link-time
  # variables; unstamped it claims v1.20, so stamp the version of the API server we run.
  local major=${KUBE_VERSION%%.*} rest=${KUBE_VERSION#*.}
  local minor=${rest%%.*} flags="-X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  flags="$flags -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major"
  flags="$flags -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  flags="$flags -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major"
  flags="$flags -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  local gobin="$LOCALENV_CACHE/build/helm-$HELM_VERSION"
  mkdir -p "$gobin"
  CGO_ENABLED=0 GOBIN="$gobin" go install -trimpath -ldflags "-s -w $flags" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  mv "$gobin/helm" "$bin"
}

build_kubeconform() {
  local bin="$BIN_DIR/kubeconform-$KUBECONFORM_VERSION"
  [ -x "$bin" ] && return
  say "building kubeconform v$KUBECONFORM_VERSION from Go modules (first run only)"
  local gobin="$LOCALENV_CACHE/build/kubeconform-$KUBECONFORM_VERSION"
  mkdir -p "$gobin"
  CGO_ENABLED=0 GOBIN="$gobin" go install -trimpath -ldflags "-s -w" \
    "github.com/yannh/kubeconform/cmd/kubeconform@v$KUBECONFORM_VERSION"
  mv "$gobin/kubeconform" "$bin"
}

# kubeconform downloads schemas by default, which cannot work offline. The PyPI wheel kubernetes-validate
# ships them; we unpack the strict set for our Kubernetes minor, drop each file's "$id" (a kubernetes.io
# URL) and point its "/api/_definitions.json" references at the file beside it, so they resolve offline.
install_kube_schemas() {
  [ -f "$KUBE_SCHEMA_DIR/.complete" ] && return
  say "unpacking offline Kubernetes v$KUBE_SCHEMA_VERSION JSON schemas from PyPI's kubernetes-validate"
  local wheels="$LOCALENV_CACHE/build/wheels"
  mkdir -p "$wheels" "$KUBE_SCHEMA_DIR"
  python3 -m pip download -q --no-deps -d "$wheels" "kubernetes-validate==${KUBE_VERSION%.*}.*" ||
    die "pip could not download kubernetes-validate ${KUBE_VERSION%.*}.*"
  python3 - "$wheels" "v$KUBE_SCHEMA_VERSION-local-strict" "$KUBE_SCHEMA_DIR" <<'PY'
import glob, json, os, sys, zipfile
wheels, flavour, out = sys.argv[1:]
wheel = sorted(glob.glob(os.path.join(wheels, "kubernetes_validate-*.whl")))[-1]
prefix = f"kubernetes_validate/kubernetes-json-schema/{flavour}/"
count = 0
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith(prefix) and name.endswith(".json"):
            text = archive.read(name).decode().replace('"/api/_definitions.json#', '"_definitions.json#')
            schema = json.loads(text)
            schema.pop("$id", None)  # else relative references resolve against kubernetes.io
            with open(os.path.join(out, name[len(prefix):]), "w") as target:
                json.dump(schema, target)
            count += 1
if count == 0:
    sys.exit(f"{wheel} has no {flavour} schemas")
PY
  touch "$KUBE_SCHEMA_DIR/.complete"
}

install_clis() {
  build_helm
  build_kubeconform
  install_kube_schemas
  build_kstatus
}

# The kstatus library (sigs.k8s.io/cli-utils, what Flux computes health with) behind a small command
# of the tests' own (tests/kstatus), built once per version of its sources.
kstatus_bin() {
  local source="$LOCALENV_ROOT/tests/kstatus"
  echo "$BIN_DIR/kstatus-$(cat "$source/go.mod" "$source/go.sum" "$source/main.go" | sha256sum | cut -c1-12)"
}

build_kstatus() {
  local bin
  bin=$(kstatus_bin)
  [ -x "$bin" ] && return
  say "building the kstatus check (sigs.k8s.io/cli-utils) from Go modules (first run only)"
  (cd "$LOCALENV_ROOT/tests/kstatus" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin.tmp" .) ||
    die "go build of tests/kstatus failed"
  mv "$bin.tmp" "$bin"
}
