#!/usr/bin/env bash
# Install what validates deploy/k8s offline, pinned and cached in .cache/k8s-tools (idempotent:
# a second run with the same versions does nothing). tests/pipeline/test_deploy_config.py uses it.
#
#   bash scripts/install-k8s-tools.sh
#
# - kustomize and kubeconform: `go install` from the Go module proxy (GOPATH in .cache/go)
# - the Kubernetes API's JSON schemas: the `kubernetes-validate` wheel from PyPI, made standalone
# - CRD schemas: CloudNativePG and KEDA from their Go modules (config/crd/bases), Strimzi generated
#   from its API model on Maven Central (scripts/k8s-tools/strimzi-crds.pom.xml)
# Writes .cache/k8s-tools/current.env (KUSTOMIZE, KUBECONFORM, K8S_SCHEMAS: paths relative to the
# repository; K8S_VERSION).
# Needs go, java, mvn and the project's .venv (PyYAML).
set -Eeuo pipefail

KUSTOMIZE_VERSION=v5.8.1
KUBECONFORM_VERSION=v0.7.0
K8S_VERSION=1.34.0                 # the Kubernetes API the manifests are checked against
KUBERNETES_VALIDATE_VERSION=1.37.0 # PyPI package that ships that API's schemas
CNPG_VERSION=v1.28.1
KEDA_VERSION=v2.18.3
STRIMZI_VERSION=0.51.0             # and its generator: scripts/k8s-tools/strimzi-crds.pom.xml

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.cache/k8s-tools"
BIN="$TOOLS/bin"
STAMP="k8s-$K8S_VERSION.cnpg-$CNPG_VERSION.keda-$KEDA_VERSION.strimzi-$STRIMZI_VERSION"
SCHEMAS="$TOOLS/schemas/$STAMP"
PY=python3
[ -x "$ROOT/.venv/bin/python" ] && PY="$ROOT/.venv/bin/python"

log() { printf '[install-k8s-tools %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

export GOPATH="$ROOT/.cache/go" GOCACHE="$ROOT/.cache/go/build" GOBIN="$BIN" GOTOOLCHAIN=local
export GOFLAGS=-modcacherw
mkdir -p "$BIN" "$TOOLS/schemas"
start=$(date +%s)

installed_version() {  # the module version a `go install`ed binary was built from
  [ -x "$BIN/$1" ] || return 0
  go version -m "$BIN/$1" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'
}

go_install() {  # name module@version
  local name=$1 pkg=$2 version=${2##*@}
  if [ "$(installed_version "$name")" = "$version" ]; then return 0; fi
  command -v go >/dev/null || die "go not found (needed to build $name)"
  log "go install $pkg"
  go install "$pkg" || die "go install $pkg failed"
}

go_install kustomize "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
go_install kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"

if [ ! -f "$SCHEMAS/.complete" ]; then
  command -v java >/dev/null || die "java not found (needed to generate Strimzi's CRDs)"
  command -v mvn >/dev/null || die "mvn not found (needed to resolve Strimzi's API model)"
  "$PY" -c 'import yaml' 2>/dev/null || die "$PY has no PyYAML: run make setup first"
  work=$(mktemp -d "$TOOLS/schemas/.tmp.XXXXXX")
  trap 'rm -rf "$work"' EXIT

  log "Kubernetes $K8S_VERSION schemas (kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI)"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$work/pip" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" || die "pip download kubernetes-validate failed"
  "$PY" "$ROOT/scripts/k8s-tools/schemas.py" core "$work"/pip/kubernetes_validate-*.whl "$K8S_VERSION" "$work/out"

  log "CloudNativePG $CNPG_VERSION and KEDA $KEDA_VERSION CRDs (Go modules)"
  cnpg=$(go mod download -json "github.com/cloudnative-pg/cloudnative-pg@$CNPG_VERSION" \
    | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') || die "go mod download cloudnative-pg failed"
  keda=$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" \
    | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') || die "go mod download keda failed"

  log "Strimzi $STRIMZI_VERSION CRDs (generated from io.strimzi:api on Maven Central)"
  mvn -q -B -f "$ROOT/scripts/k8s-tools/strimzi-crds.pom.xml" -Dstrimzi.version="$STRIMZI_VERSION" \
    -Dmaven.repo.local="$ROOT/.cache/m2" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$work/strimzi-lib" >"$work/mvn.log" 2>&1 \
    || { tail -n 30 "$work/mvn.log" >&2; die "could not resolve Strimzi's jars with Maven"; }
  mkdir -p "$work/strimzi"
  for spec in kafka.Kafka=kafka nodepool.KafkaNodePool=kafkanodepool topic.KafkaTopic=kafkatopic \
              user.KafkaUser=kafkauser; do
    java -cp "$work/strimzi-lib/*" io.strimzi.crdgenerator.CrdGenerator --crd-api-version v1 \
      --api-versions v1beta2,v1 --storage-version v1beta2 \
      --yaml "io.strimzi.api.kafka.model.${spec%%=*}=$work/strimzi/${spec##*=}.yaml" >"$work/gen.log" 2>&1 \
      || { cat "$work/gen.log" >&2; die "generating Strimzi's ${spec%%=*} CRD failed"; }
  done

  "$PY" "$ROOT/scripts/k8s-tools/schemas.py" crds "$work/out" \
    "$cnpg"/config/crd/bases/*.yaml "$keda"/config/crd/bases/*.yaml "$work"/strimzi/*.yaml
  touch "$work/out/.complete"
  rm -rf "$SCHEMAS"
  mv "$work/out" "$SCHEMAS"
fi

cat >"$TOOLS/current.env.tmp" <<ENV
KUSTOMIZE=${BIN#"$ROOT"/}/kustomize
KUBECONFORM=${BIN#"$ROOT"/}/kubeconform
K8S_SCHEMAS=${SCHEMAS#"$ROOT"/}
K8S_VERSION=$K8S_VERSION
ENV
mv "$TOOLS/current.env.tmp" "$TOOLS/current.env"
log "ready in $(( $(date +%s) - start )) s: kustomize $KUSTOMIZE_VERSION, kubeconform $KUBECONFORM_VERSION," \
    "Kubernetes $K8S_VERSION, CloudNativePG $CNPG_VERSION, KEDA $KEDA_VERSION, Strimzi $STRIMZI_VERSION"
