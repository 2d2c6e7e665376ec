#!/bin/bash
# scripts/bench-store.sh - import then save a 1 GiB rootfs with forge and with its peers
# (umoci for the import, skopeo for the save), same data, same run, release build.
#
#   forge:  forge import rootfs.tar bench:1   +  forge save --format oci-archive
#   peers:  umoci init/new + umoci raw add-layer rootfs.tar
#                                             +  skopeo copy oci:… oci-archive:…
#
# Both sides gzip the same 1 GiB tar into one layer blob in an OCI layout and then write
# an oci-archive of it. forge also unpacks the rootfs into its snapshot on import (what
# makes the image runnable, and where hostile entries are refused) and writes a canonical
# layer from that tree, which umoci's raw add-layer (the input tar gzipped as is) does not
# do. So a second peer pipeline does the same work as forge, for a like-with-like figure
# (reported besides, not instead of, the issue's comparison):
#
#   peers-canonical:  umoci new + umoci unpack + tar -x rootfs.tar into the bundle's rootfs
#                     + umoci repack (a layer from the unpacked tree) + skopeo copy
#
# gzip: forge writes gzip at level 6 (docker's and BuildKit's DefaultCompression), but
# per 1 MiB block stores incompressible data and Huffman-codes data without repeats (see
# crates/forge-store/src/pgzip.rs); umoci uses klauspost's pgzip at its default level.
#
# The rootfs: 10,000 small text files (~100 MB) plus four large files (two random,
# incompressible; two base64 text), about 1 GiB in all. Built once under $BENCH_DIR.
# Reports mean wall time over $RUNS runs (hyperfine), throughput in MiB/s of rootfs, the
# forge/peer ratios, and each side's peak RSS (/usr/bin/time -v, max resident).
# Environment: RUNS (default 3), BENCH_DIR (default target/bench-store),
# CARGO_TARGET_DIR (where the release binary is built), FORGE_LEVEL (forge's gzip level,
# default 6 as docker's; umoci's output is barely compressed, level 1 is closer to it).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
level=${FORGE_LEVEL:-6}
work=${BENCH_DIR:-$PWD/target/bench-store}
target=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p "$work"

for tool in hyperfine umoci skopeo /usr/bin/time; do
    command -v "$tool" >/dev/null || {
        echo "bench-store.sh: $tool missing (apt-get install hyperfine umoci skopeo time)" >&2
        exit 1
    }
done

cargo build --release -q -p forge
forge="$target/release/forge"

# ---- the data, once ----
rootfs_tar="$work/rootfs.tar"
if [[ ! -f $rootfs_tar ]]; then
    echo "+ building the 1 GiB rootfs in $work"
    tree="$work/tree"
    rm -rf "$tree"
    mkdir -p "$tree/usr/share/doc" "$tree/opt/big"
    # 10,000 small files, 1-19 KiB of text each, in 100 directories.
    python3 - "$tree/usr/share/doc" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
words = [("w%05d" % i) for i in range(5000)]
for d in range(100):
    dd = os.path.join(root, "pkg%03d" % d)
    os.makedirs(dd, exist_ok=True)
    for f in range(100):
        n = rng.randint(1, 19) * 1024
        text = " ".join(rng.choice(words) for _ in range(n // 6 + 1))[:n]
        with open(os.path.join(dd, "file%03d.txt" % f), "w") as fh:
            fh.write(text)
PY
    head -c $((240 << 20)) /dev/urandom > "$tree/opt/big/random1.bin"
    head -c $((240 << 20)) /dev/urandom > "$tree/opt/big/random2.bin"
    head -c $((165 << 20)) /dev/urandom | base64 > "$tree/opt/big/text1.b64"
    head -c $((165 << 20)) /dev/urandom | base64 > "$tree/opt/big/text2.b64"
    tar --numeric-owner -C "$tree" -cf "$rootfs_tar.partial" .
    mv "$rootfs_tar.partial" "$rootfs_tar"
    rm -rf "$tree"
fi
size=$(stat -c %s "$rootfs_tar")
mib=$(awk -v s="$size" 'BEGIN { printf "%.0f", s / 1048576 }')
echo "rootfs tar: $size bytes ($mib MiB), $(tar -tf "$rootfs_tar" | wc -l) entries"

# ---- the two pipelines ----
cat > "$work/forge.sh" <<EOF
#!/bin/bash
set -e
"$forge" --root "$work/forge-store" import --compression-level $level "$rootfs_tar" bench:1 >/dev/null
"$forge" --root "$work/forge-store" save --format oci-archive -o "$work/forge-out.tar" bench:1
EOF
cat > "$work/peers.sh" <<EOF
#!/bin/bash
set -e
umoci init --layout "$work/umoci-layout"
umoci new --image "$work/umoci-layout:bench"
umoci raw add-layer --image "$work/umoci-layout:bench" "$rootfs_tar"
skopeo copy -q "oci:$work/umoci-layout:bench" "oci-archive:$work/peers-out.tar:bench:1"
EOF
cat > "$work/peers-canonical.sh" <<EOF
#!/bin/bash
set -e
umoci init --layout "$work/umoci2-layout"
umoci new --image "$work/umoci2-layout:bench"
umoci unpack --image "$work/umoci2-layout:bench" "$work/umoci2-bundle" >/dev/null
tar --numeric-owner -xpf "$rootfs_tar" -C "$work/umoci2-bundle/rootfs"
umoci repack --image "$work/umoci2-layout:bench" "$work/umoci2-bundle"
skopeo copy -q "oci:$work/umoci2-layout:bench" "oci-archive:$work/peers2-out.tar:bench:1"
EOF
# The import and save halves alone, for the breakdown.
cat > "$work/forge-import.sh" <<EOF
#!/bin/bash
set -e
"$forge" --root "$work/forge-store" import --compression-level $level "$rootfs_tar" bench:1 >/dev/null
EOF
cat > "$work/forge-save.sh" <<EOF
#!/bin/bash
set -e
"$forge" --root "$work/forge-store" save --format oci-archive -o "$work/forge-out.tar" bench:1
EOF
cat > "$work/umoci-import.sh" <<EOF
#!/bin/bash
set -e
umoci init --layout "$work/umoci-layout"
umoci new --image "$work/umoci-layout:bench"
umoci raw add-layer --image "$work/umoci-layout:bench" "$rootfs_tar"
EOF
cat > "$work/skopeo-save.sh" <<EOF
#!/bin/bash
set -e
rm -f "$work/peers-out.tar"
skopeo copy -q "oci:$work/umoci-layout:bench" "oci-archive:$work/peers-out.tar:bench:1"
EOF
# Removing the previous run's output (forge's store holds the unpacked 1 GiB snapshot,
# which takes seconds to delete) is not part of import + save: hyperfine runs these
# untimed before each run (--prepare), for both sides alike.
cat > "$work/clean-forge.sh" <<EOF
#!/bin/bash
rm -rf "$work/forge-store" "$work/forge-out.tar"
sync
EOF
cat > "$work/clean-peers.sh" <<EOF
#!/bin/bash
rm -rf "$work/umoci-layout" "$work/peers-out.tar"
sync
EOF
cat > "$work/clean-peers-canonical.sh" <<EOF
#!/bin/bash
rm -rf "$work/umoci2-layout" "$work/umoci2-bundle" "$work/peers2-out.tar"
sync
EOF
chmod +x "$work"/*.sh

echo "+ hyperfine, $runs runs each"
hyperfine --runs "$runs" --warmup 1 --export-json "$work/pipelines.json" \
    -p "$work/clean-forge.sh" -p "$work/clean-peers.sh" -p "$work/clean-peers-canonical.sh" \
    -n forge "$work/forge.sh" -n peers "$work/peers.sh" -n peers-canonical "$work/peers-canonical.sh"
"$work/clean-forge.sh" && "$work/forge-import.sh" # warm-up
"$work/clean-peers.sh" && "$work/umoci-import.sh"
hyperfine --runs "$runs" --export-json "$work/halves.json" \
    -p "$work/clean-forge.sh" -p "$work/clean-peers.sh" \
    -n forge-import "$work/forge-import.sh" -n umoci-import "$work/umoci-import.sh"
hyperfine --runs "$runs" --warmup 1 --export-json "$work/saves.json" \
    -n forge-save "$work/forge-save.sh" -n skopeo-save "$work/skopeo-save.sh"

# ---- peak memory ----
rss() { # max resident KiB of one command
    /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ { print $2 }'
}
rm -rf "$work/forge-store"
forge_import_rss=$(rss "$forge" --root "$work/forge-store" import --compression-level "$level" "$rootfs_tar" bench:1)
forge_save_rss=$(rss "$forge" --root "$work/forge-store" save --format oci-archive -o "$work/forge-out.tar" bench:1)
rm -rf "$work/umoci-layout"
umoci init --layout "$work/umoci-layout" && umoci new --image "$work/umoci-layout:bench"
umoci_rss=$(rss umoci raw add-layer --image "$work/umoci-layout:bench" "$rootfs_tar")
skopeo_rss=$(rss skopeo copy -q "oci:$work/umoci-layout:bench" "oci-archive:$work/peers-out.tar:bench:1")

python3 - "$work" "$mib" "$forge_import_rss" "$forge_save_rss" "$umoci_rss" "$skopeo_rss" <<'PY'
import json, sys
work, mib = sys.argv[1], float(sys.argv[2])
fi, fs, ur, sr = (int(x) / 1024 for x in sys.argv[3:7])
def means(name):
    return {r["command"]: (r["mean"], r["stddev"] or 0.0) for r in json.load(open(f"{work}/{name}.json"))["results"]}
p, h, s = means("pipelines"), means("halves"), means("saves")
def line(label, forge, peer):
    (f, fsd), (q, qsd) = forge, peer
    print(f"{label:<22} forge {f:7.2f}s ±{fsd:4.2f} ({mib / f:6.1f} MiB/s)   peer {q:7.2f}s ±{qsd:4.2f} ({mib / q:6.1f} MiB/s)   forge/peer throughput {q / f:4.2f}x")
print()
line("import + save", p["forge"], p["peers"])
line("  vs canonical peers", p["forge"], p["peers-canonical"])
line("import (umoci)", h["forge-import"], h["umoci-import"])
line("save (skopeo)", s["forge-save"], s["skopeo-save"])
import os, glob
def blob(d):
    sizes = [os.path.getsize(p) for p in glob.glob(f"{work}/{d}/blobs/sha256/*")]
    return max(sizes) / 1048576 if sizes else 0
print(f"layer blob: forge {blob('forge-store'):.0f} MiB, umoci {blob('umoci-layout'):.0f} MiB, umoci repack {blob('umoci2-layout'):.0f} MiB (of {mib:.0f} MiB of tar)")
print(f"peak RSS: forge import {fi:.1f} MiB, forge save {fs:.1f} MiB, umoci add-layer {ur:.1f} MiB, skopeo copy {sr:.1f} MiB")
ok = max(fi, fs) < 100
print("forge peak RSS under 100 MiB:", "yes" if ok else "NO")
sys.exit(0 if ok else 1)
PY
