#!/usr/bin/env bash
# Container start latency: `forge run --rm busybox true` against `podman run --rm`
# and bare `crun run` of the same image, on this machine, in one run (hyperfine).
#
# usage: sudo scripts/bench-run.sh [RUNS]        (default 30 runs, 3 warm-ups each)
#
# The image is the test busybox (testdata/busybox-rootfs.sh), imported into a fresh
# forge store, saved as an oci-archive, loaded into a private podman store and
# unpacked by umoci into a crun bundle, so all three start the same files.
# Peers' workarounds on this VM (see /work/shared/peers/README.md):
# - crun 1.8 refuses the hybrid cgroup layout: it runs in a private mount namespace
#   with /sys/fs/cgroup/unified unmounted (the wrapper's cost is measured alone and
#   reported; the crun figure includes it, as in bench-peers.sh);
# - podman needs --ulimit flags (root lacks CAP_SYS_RESOURCE here) and runs with its
#   own storage, cgroupfs and file events, --network none (forge's default network
#   is a private namespace with lo only, the same thing).
# Needs: hyperfine, jq, crun, umoci, podman, busybox-static; a release build of forge
# (built here with cargo unless FORGE=path is given).
set -euo pipefail

RUNS=${1:-30}
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /var/tmp/forge-bench-run.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT

for tool in hyperfine jq crun umoci podman; do
    command -v "$tool" >/dev/null || { echo "bench-run.sh: $tool is not installed" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "bench-run.sh: run as root" >&2; exit 1; }

if [[ -z ${FORGE:-} ]]; then
    (cd "$HERE" && cargo build --release -q -p forge)
    FORGE=${CARGO_TARGET_DIR:-$HERE/target}/release/forge
fi
echo "=== bench-run.sh $(date -u +%FT%TZ) on $(uname -r), $(nproc) cpus, $RUNS runs"
echo "forge: $FORGE"

# ---- the image, three ways
sh "$HERE/testdata/busybox-rootfs.sh" "$WORK/rootfs" >/dev/null
tar --numeric-owner -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" .
STORE=$WORK/forge-store
"$FORGE" --root "$STORE" import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' \
    "$WORK/rootfs.tar" busybox:latest >/dev/null
"$FORGE" --root "$STORE" save --format oci-archive -o "$WORK/busybox.oci.tar" busybox:latest
mkdir -p "$WORK/layout"
tar -C "$WORK/layout" -xf "$WORK/busybox.oci.tar"

bundle=$WORK/bundle
umoci unpack --image "$WORK/layout:busybox:latest" "$bundle" >/dev/null
jq '.process.terminal=false | .process.args=["true"]' "$bundle/config.json" > "$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
wrap=$WORK/hide-cgroup2.sh
cat > "$wrap" <<'EOF'
#!/bin/sh
exec unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' sh "$@"
EOF
chmod +x "$wrap"

P="podman --root $WORK/podman/root --runroot $WORK/podman/run --storage-driver overlay \
--cgroup-manager cgroupfs --events-backend file"
PODMAN_ULIMITS="--ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=32768:32768"
$P load -q -i "$WORK/busybox.oci.tar" >/dev/null
PODMAN_IMAGE=$($P images -q | head -1)

# ---- sanity: each prints and exits 0
"$FORGE" --root "$STORE" run --rm busybox echo forge-ok
$P run --rm $PODMAN_ULIMITS --network none --runtime runc "$PODMAN_IMAGE" echo podman-ok
(cd "$bundle" && "$wrap" crun --root "$WORK/crun-state" run bench-crun < /dev/null) && echo crun-ok

# ---- measure
json=$WORK/results.json
hyperfine --style basic --runs "$RUNS" --warmup 3 -N --export-json "$json" \
    -n forge "$FORGE --root $STORE run --rm busybox true" \
    -n podman "$P run --rm $PODMAN_ULIMITS --network none --runtime runc $PODMAN_IMAGE true" \
    -n crun "$wrap sh -c 'cd $bundle && exec crun --root $WORK/crun-state run bench-crun < /dev/null'" \
    -n crun-wrapper-alone "$wrap true"

echo
echo "==================== RESULTS (ms, median / min over $RUNS runs) ===================="
jq -r '.results[] | [.command, (.median*1000|.*100|round/100), (.min*1000|.*100|round/100)] | @tsv' "$json" |
    awk -F'\t' '{printf "%-20s %8.2f %8.2f\n", $1, $2, $3}'
jq -r '
  (.results | map({(.command): .median}) | add) as $m
  | "forge / podman: \(($m.forge / $m.podman * 100 | round) / 100)",
    "forge / crun:   \(($m.forge / $m.crun * 100 | round) / 100)",
    "forge / (crun - wrapper): \(($m.forge / ($m.crun - $m["crun-wrapper-alone"]) * 100 | round) / 100)"' "$json"
