#!/bin/bash
# scripts/bench-registry.sh - push and pull of a ~500 MiB multi-layer image to a local
# docker-registry (127.0.0.1, plain HTTP), forge against `skopeo copy`, in one run.
#
# The image: FROM scratch + 5 COPY layers of 100 MiB incompressible data (so the
# compressed blobs are ~500 MiB too), built once by forge. skopeo copies the very same
# blobs, reading forge's store as the OCI layout it is (oci:$STORE:bench:1).
#
# Every push run starts from an empty registry (its storage wiped and restarted), so no
# tool can skip or mount a blob; every pull run starts from an empty destination.
# forge pull also unpacks the layers into snapshots (docker's "Pull complete"); skopeo
# only writes the blobs to an OCI layout.
#
# Usage: scripts/bench-registry.sh [RUNS]   (default 5; needs hyperfine, skopeo,
#        docker-registry; run as root like the tests)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-5}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WORK=${BENCH_DIR:-$TARGET/bench-registry}
FORGE=$TARGET/release/forge
LAYERS=5
LAYER_MIB=100

log() { printf '+ %s\n' "$*" >&2; }

log "release build"
cargo build --release -p forge >&2

rm -rf "$WORK"
mkdir -p "$WORK/ctx" "$WORK/registry"
STORE=$WORK/store

log "image: $LAYERS layers x $LAYER_MIB MiB"
{
    echo "FROM scratch"
    for i in $(seq "$LAYERS"); do
        head -c $((LAYER_MIB << 20)) /dev/urandom > "$WORK/ctx/layer$i"
        echo "COPY layer$i /data/layer$i"
    done
} > "$WORK/ctx/Dockerfile"
"$FORGE" --root "$STORE" build -q -t bench:1 "$WORK/ctx" >/dev/null
rm -rf "$WORK/ctx"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
cat > "$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
  delete:
    enabled: true
http:
  addr: $REG
EOF

stop_registry() {
    if [[ -f $WORK/registry/pid ]]; then
        kill "$(cat "$WORK/registry/pid")" 2>/dev/null || true
        while kill -0 "$(cat "$WORK/registry/pid")" 2>/dev/null; do sleep 0.05; done
        rm -f "$WORK/registry/pid"
    fi
}
start_registry() {
    /usr/bin/docker-registry serve "$WORK/registry/config.yml" \
        >"$WORK/registry/log" 2>&1 </dev/null &
    echo $! > "$WORK/registry/pid"
    for _ in $(seq 200); do
        curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "registry did not start; see $WORK/registry/log" >&2
    exit 1
}
fresh_registry() {
    stop_registry
    rm -rf "$WORK/registry/data"
    start_registry
}
trap stop_registry EXIT
export -f stop_registry start_registry fresh_registry
export WORK REG

log "push: forge vs skopeo copy ($RUNS runs each)"
hyperfine --shell bash --runs "$RUNS" --style basic --export-json "$WORK/push.json" \
    --prepare 'fresh_registry' \
    -n "forge push" "$FORGE --root $STORE push -q bench:1 $REG/bench/app:1" \
    -n "skopeo copy (push)" "skopeo copy --quiet --dest-tls-verify=false oci:$STORE:bench:1 docker://$REG/bench/app:1"

# Pulls read from one registry holding the image.
fresh_registry
"$FORGE" --root "$STORE" push -q bench:1 "$REG/bench/app:1" >/dev/null

log "pull: forge vs skopeo copy ($RUNS runs each)"
hyperfine --shell bash --runs "$RUNS" --style basic --export-json "$WORK/pull.json" \
    --prepare "rm -rf $WORK/pulled; sync" \
    -n "forge pull" "$FORGE --root $WORK/pulled pull -q $REG/bench/app:1" \
    -n "skopeo copy (pull)" "skopeo copy --quiet --src-tls-verify=false docker://$REG/bench/app:1 oci:$WORK/pulled:app"

python3 - "$WORK/push.json" "$WORK/pull.json" <<'EOF'
import json, sys
print()
print(f"{'':22}{'median s':>10}{'min s':>8}{'max s':>8}")
for path in sys.argv[1:]:
    results = json.load(open(path))["results"]
    for r in results:
        print(f"{r['command']:22}{r['median']:10.2f}{r['min']:8.2f}{r['max']:8.2f}")
    forge, skopeo = results[0]["median"], results[1]["median"]
    print(f"{'':22}skopeo/forge = {skopeo / forge:.2f}x")
EOF
