#!/bin/bash
# scripts/bench-sandbox.sh - start-to-exit latency of /bin/true in forge's sandbox on the
# store's busybox snapshot, against `crun run` and `runc run` (Debian's) of the same
# bundle unpacked by umoci, in the same run. A benchmark, not a test: run it as root.
#
# How it measures:
# - Per invocation, with hyperfine (-N: no shell, N runs, warmup first): one process per
#   run for each of
#     forge  `snapshot_step run STORE CHAIN` (release example in crates/forge-sandbox):
#            prepare a writable snapshot on the busybox chain, run /bin/true in the
#            sandbox on an overlay of it, drop the snapshot; process start to exit;
#     runc   `runc run --bundle B` of the umoci bundle;
#     crun   `crun run --bundle B`, inside `unshare -m` with /sys/fs/cgroup/unified
#            unmounted (Debian's crun 1.8 refuses this VM's hybrid cgroup layout), the
#            whole hyperfine run in that namespace so the unshare is not timed.
# - In process: the same example looping N steps, the sandbox alone and the whole step.
# The rootfs forge runs on is the bundle's rootfs, imported into a fresh store.
# Per invocation, forge's process exit waits for the overlay's release, which syncs the
# whole upper filesystem (ovl_sync_fs): on a disk busy with other writers that dominates
# (compare WORK=/dev/shm/forge-bench, a tmpfs, where that sync is free).
#
# Usage: scripts/bench-sandbox.sh [RUNS]   (default 300; WORK=dir to keep the files)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-300}
target=${CARGO_TARGET_DIR:-target}
work=${WORK:-$target/bench-sandbox}

[[ $(id -u) == 0 ]] || { echo "bench-sandbox.sh: run as root" >&2; exit 1; }
packages=(busybox-static umoci crun runc hyperfine jq)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "+ installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "+ cargo build --release --example snapshot_step"
cargo build -q --release -p forge-sandbox --example snapshot_step
ex=$(realpath "$target/release/examples/snapshot_step")

rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
sh testdata/busybox-rootfs.sh "$work/rootfs"

# The bundle: an OCI image of the busybox rootfs, unpacked by umoci, running /bin/true.
umoci init --layout "$work/oci"
umoci new --image "$work/oci:bb"
umoci insert --image "$work/oci:bb" "$work/rootfs" /
umoci config --image "$work/oci:bb" --config.cmd /bin/true
umoci unpack --image "$work/oci:bb" "$work/bundle" >/dev/null
jq '.process.terminal = false | .process.args = ["/bin/true"]' \
    "$work/bundle/config.json" > "$work/config.json"
mv "$work/config.json" "$work/bundle/config.json"

chain=$("$ex" setup "$work/store" "$work/bundle/rootfs")
echo "+ busybox snapshot $chain"

hf=(hyperfine -N --style basic --warmup 20 --runs "$runs")
"${hf[@]}" --export-json "$work/host.json" \
    -n forge "$ex run $work/store $chain" \
    -n runc "runc run --bundle $work/bundle forge-bench-runc"
unshare -m --propagation private sh -c '
    umount /sys/fs/cgroup/unified 2>/dev/null || true
    exec "$@"' sh "${hf[@]}" --export-json "$work/crun.json" \
    -n crun "crun run --bundle $work/bundle forge-bench-crun"

echo "+ in process ($runs steps)"
inproc=$("$ex" run "$work/store" "$chain" "$runs")
echo "$inproc"

median() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .median * 1000' "$1"; }
forge=$(median "$work/host.json" forge)
runc=$(median "$work/host.json" runc)
crun=$(median "$work/crun.json" crun)
echo
echo "Medians over $runs runs, per invocation (process start to exit):"
printf '  forge %7.2f ms\n  crun  %7.2f ms   forge/crun = %.2f\n  runc  %7.2f ms   forge/runc = %.2f\n' \
    "$forge" "$crun" "$(jq -n "$forge / $crun")" "$runc" "$(jq -n "$forge / $runc")"
echo "In process: $inproc"
