#!/bin/bash
# bench-build.sh - forge build against docker 20.10's BuildKit and `buildah bud --layers`,
# measured in one run on the same Dockerfile and context (issue 5's reference workload).
#
# Workload (the one of /work/shared/peers/bench-peers.sh): busybox base, ENV/WORKDIR, COPY of a
# generated 2,000-file / ~20 MB context, a RUN that hashes it, a RUN deleting files of a lower
# layer, CMD. Each tool has the same busybox image, named busybox:latest: forge imports
# testdata/busybox-rootfs.sh's tree, `forge save` writes it as a docker-archive (`docker load`)
# and an oci-archive (`buildah pull`), so the three Dockerfiles are byte-identical.
#
# Steps (hyperfine, median of several runs, every --prepare ends with sync):
#   cold    build with the base present, build cache and built images wiped, --no-cache
#   noop    rebuild with nothing changed (all cache hits)
#   mod1    rebuild after one context file's content changed
#   export  the built image to an archive (forge/buildah: oci-archive; docker: docker save)
#
# Usage: scripts/bench-build.sh
#   env: RUNS=5 RUNS_NOOP=10   hyperfine runs
#        TOOLS="forge docker buildah"
#        FORGE=path            forge binary (default: target/release/forge after cargo build)
#        SKIP_CARGO=1          do not run cargo build --release
#        LAB=/tmp/forge-bench  work dir; dockerd gets its own data-root and socket under it
# Results in $LAB/results/<UTC>/ (results.tsv, <tool>.<step>.json, bench.log).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAB=${LAB:-/tmp/forge-bench}
CTX=$LAB/ctx
OUT=$LAB/out
RES=$LAB/results/$(date -u +%Y%m%dT%H%M%SZ)
RUNS=${RUNS:-5}
RUNS_NOOP=${RUNS_NOOP:-10}
TOOLS=${TOOLS:-"forge docker buildah"}
DOCKER_SOCK=$LAB/docker.sock
D="/usr/bin/docker -H unix://$DOCKER_SOCK"      # Debian's 20.10 client (has BuildKit)
BS=$LAB/buildah
B="buildah --root $BS/root --runroot $BS/run --storage-driver overlay"
IMG=bench

mkdir -p "$RES" "$OUT"
ln -sfn "$RES" "$LAB/results/latest"
exec > >(tee -a "$RES/bench.log") 2>&1
echo "=== bench-build.sh $(date -u +%FT%TZ) on $(uname -r), $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$RES/results.tsv"

# ------------------------------------------------------------------ forge binary
if [[ -z ${FORGE:-} ]]; then
    if [[ ${SKIP_CARGO:-0} != 1 ]]; then
        echo "+ cargo build --release -p forge"
        (cd "$ROOT" && cargo build --release -q -p forge)
    fi
    FORGE=$ROOT/target/release/forge
fi
FS=$LAB/forge-store
F="$FORGE --root $FS"
echo "forge: $FORGE ($(stat -c %y "$FORGE" | cut -d. -f1))"

# ------------------------------------------------------------------ dockerd
STARTED_DOCKERD=0
start_dockerd() {
    $D info >/dev/null 2>&1 && return 0
    mkdir -p "$LAB/docker" "$LAB/docker-exec"
    echo "+ starting dockerd (data-root $LAB/docker/data, socket $DOCKER_SOCK)"
    setsid /usr/sbin/dockerd --data-root "$LAB/docker/data" --exec-root "$LAB/docker-exec" \
        --host "unix://$DOCKER_SOCK" --pidfile "$LAB/docker.pid" \
        > "$LAB/docker/dockerd.log" 2>&1 < /dev/null &
    STARTED_DOCKERD=1
    for _ in $(seq 150); do $D info >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "dockerd did not start; see $LAB/docker/dockerd.log" >&2; return 1
}
stop_dockerd() {
    [[ -f $LAB/docker.pid ]] || return 0
    local pid; pid=$(cat "$LAB/docker.pid")
    if kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/cmdline"; then
        echo "+ stopping dockerd pid $pid"
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
}
cleanup() { [[ $STARTED_DOCKERD == 1 ]] && stop_dockerd; return 0; }
trap cleanup EXIT
trap "exit 130" INT TERM

# ------------------------------------------------------------------ base image
make_base() {
    local bb=$LAB/base/rootfs
    mkdir -p "$LAB/base"
    "$ROOT/testdata/busybox-rootfs.sh" "$bb"
    tar -C "$bb" -cf "$LAB/base/rootfs.tar" .
    rm -rf "$LAB/base/store"
    $FORGE --root "$LAB/base/store" import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' \
        "$LAB/base/rootfs.tar" busybox:latest >/dev/null
    $FORGE --root "$LAB/base/store" save -o "$LAB/base/docker.tar" busybox:latest
    $FORGE --root "$LAB/base/store" save --format oci-archive -o "$LAB/base/oci.tar" busybox:latest
}

# ------------------------------------------------------------------ context
# Deterministic: 2,000 files (base64 text, 4-16 KB, ~20 MB) in 20 dirs, fixed mtimes.
gen_context() {
    rm -rf "$CTX"; mkdir -p "$CTX"
    /usr/bin/python3 - "$CTX" <<'PY'
import base64, os, random, sys
root = sys.argv[1]; rng = random.Random(20241122); total = 0
for i in range(2000):
    d = os.path.join(root, "data", "d%02d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    n = rng.randint(4000, 16000)
    raw = rng.getrandbits(8 * n).to_bytes(n, "little")
    txt = base64.encodebytes(raw)[:n]
    p = os.path.join(d, "f%04d.txt" % i)
    with open(p, "wb") as f:
        f.write(txt)
    os.chmod(p, 0o644); os.utime(p, (1000000000, 1000000000)); total += len(txt)
for dp, dn, fn in os.walk(root):
    os.chmod(dp, 0o755); os.utime(dp, (1000000000, 1000000000))
print("context: 2000 files, %d bytes" % total)
PY
    cat > "$CTX/Dockerfile" <<'EOF'
FROM busybox:latest
ENV APP_HOME=/app BENCH=1
WORKDIR /app
COPY data/ /app/data/
RUN set -e; mkdir -p /app/gen; i=0; while [ $i -lt 200 ]; do echo "gen $i" > /app/gen/g$i.txt; i=$((i+1)); done; find /app/data -type f | sort | xargs sha256sum > /app/SHA256SUMS; sha256sum /app/SHA256SUMS > /app/SHA256SUMS.sum; wc -l < /app/SHA256SUMS
RUN rm /app/data/d00/f0000.txt && rm -rf /app/data/d19 && echo removed > /app/removed.txt
CMD ["/bin/sh", "-c", "cat /app/SHA256SUMS.sum"]
EOF
    echo "Dockerfile" > "$CTX/.dockerignore"
}
MODFILE=$CTX/data/d07/f0700.txt
MOD_PREP="date +%s%N >> $MODFILE; sync"

# ------------------------------------------------------------------ tools
setup_tool() {
    case $1 in
    forge)
        BUILD="$F build --progress=quiet -q -t $IMG $CTX"
        BUILD_NC="$F build --progress=quiet -q --no-cache -t $IMG $CTX"
        # cache, snapshots and built images gone; the imported base stays
        WIPE_BUILT="rm -rf $FS && cp -a $LAB/base/store $FS; sync"
        EXPORT="rm -f $OUT/forge.tar && $F save --format oci-archive -o $OUT/forge.tar $IMG"
        EXPORT_REF=oci-archive:$OUT/forge.tar ;;
    docker)
        start_dockerd
        BUILD="DOCKER_BUILDKIT=1 $D build --network none -q -t $IMG $CTX"
        BUILD_NC="DOCKER_BUILDKIT=1 $D build --no-cache --network none -q -t $IMG $CTX"
        WIPE_BUILT="$D system prune -af >/dev/null && $D builder prune -af >/dev/null && $D load -q -i $LAB/base/docker.tar >/dev/null; sync"
        EXPORT="rm -f $OUT/docker.tar && $D save -o $OUT/docker.tar $IMG"
        EXPORT_REF=docker-archive:$OUT/docker.tar ;;
    buildah)
        # chroot isolation (needs host networking); runc: crun 1.8 fails on this VM's cgroups
        BUILD="$B bud --layers --pull=false --runtime runc --isolation chroot --network host -q -t $IMG $CTX"
        BUILD_NC="$B bud --no-cache --layers --pull=false --runtime runc --isolation chroot --network host -q -t $IMG $CTX"
        WIPE_BUILT="$B rm -a >/dev/null 2>&1; $B rmi -a -f >/dev/null 2>&1; rm -rf $BS; $B pull -q oci-archive:$LAB/base/oci.tar >/dev/null && $B tag localhost/busybox:latest docker.io/library/busybox:latest; sync"
        EXPORT="rm -f $OUT/buildah.tar && $B push -q $IMG oci-archive:$OUT/buildah.tar"
        EXPORT_REF=oci-archive:$OUT/buildah.tar ;;
    esac
}

bench() {   # bench TOOL STEP RUNS WARMUP PREPARE CMD
    local name=$1 step=$2 runs=$3 warm=$4 prep=$5 cmd=$6 json=$RES/$1.$2.json
    echo; echo "--- $name / $step (load1 $(cut -d' ' -f1 /proc/loadavg)): $cmd"
    if hyperfine --style basic --runs "$runs" --warmup "$warm" --export-json "$json" \
            --prepare "$prep" "$cmd"; then
        jq -r --arg n "$name" --arg s "$step" \
            '.results[0] | [$n, $s, .min, .median, .mean, (.times|length)] | @tsv' "$json" >> "$RES/results.tsv"
    else
        printf '%s\t%s\tFAIL\tFAIL\tFAIL\t0\n' "$name" "$step" >> "$RES/results.tsv"
        echo "!!! $name / $step failed; one run:"; bash -c "$prep" >/dev/null 2>&1 || true
        bash -c "$cmd" 2>&1 | tail -5 || true
    fi
}

# verify TOOL: the exported image has the workload's effects (same work done by every tool)
verify() {
    local d=$LAB/verify/$1 r cfg ok=1 msg=""
    rm -rf "$d"; mkdir -p "$d"
    skopeo copy -q "$EXPORT_REF" "oci:$d/oci:img"
    umoci unpack --image "$d/oci:img" "$d/bundle" >/dev/null
    r=$d/bundle/rootfs; cfg=$(skopeo inspect --config "oci:$d/oci:img")
    [[ -f $r/app/SHA256SUMS.sum && -f $r/app/removed.txt ]] || { ok=0; msg+=" no-sums"; }
    [[ ! -e $r/app/data/d19 && ! -e $r/app/data/d00/f0000.txt ]] || { ok=0; msg+=" whiteout"; }
    [[ $(find "$r/app/data" -type f | wc -l) == 1899 ]] || { ok=0; msg+=" data-count"; }
    [[ $(find "$r/app/gen" -type f | wc -l) == 200 ]] || { ok=0; msg+=" gen-count"; }
    [[ $(jq -r '.config.WorkingDir' <<< "$cfg") == /app ]] || { ok=0; msg+=" workdir"; }
    [[ $(jq -c '.config.Cmd' <<< "$cfg") == '["/bin/sh","-c","cat /app/SHA256SUMS.sum"]' ]] || { ok=0; msg+=" cmd"; }
    echo "verify $1: $([[ $ok == 1 ]] && echo OK || echo "FAILED:$msg") (SHA256SUMS.sum $(cut -c1-16 "$r/app/SHA256SUMS.sum" 2>/dev/null))"
    rm -rf "$d"
}

run_tool() {
    local t=$1
    setup_tool "$t"
    echo; echo "================ $t"
    cp -p "$LAB/modfile.orig" "$MODFILE"
    bash -c "$WIPE_BUILT"
    if ! bash -c "$BUILD" > "$RES/$t.sanity.log" 2>&1; then
        echo "!!! $t: sanity build failed"; tail -5 "$RES/$t.sanity.log"; return 0
    fi
    bash -c "$EXPORT" >/dev/null; verify "$t"
    bench "$t" cold   "$RUNS"      0 "$WIPE_BUILT" "$BUILD_NC"
    bench "$t" noop   "$RUNS_NOOP" 1 "sync"        "$BUILD"
    bench "$t" mod1   "$RUNS"      1 "$MOD_PREP"   "$BUILD"
    bench "$t" export "$RUNS"      1 "sync"        "$EXPORT"
}

make_base
gen_context
cp -p "$MODFILE" "$LAB/modfile.orig"
for t in $TOOLS; do run_tool "$t"; done
cp -p "$LAB/modfile.orig" "$MODFILE"

# ------------------------------------------------------------------ report
echo
echo "==================== medians, seconds (min in parentheses) ===================="
awk -F'\t' '
  { k=$1; if (!(k in seen)) { seen[k]=1; order[++n]=k }
    v[k,$2] = ($3=="FAIL") ? "FAIL" : sprintf("%.3f (%.3f)", $4, $3); m[k,$2]=$4 }
  END {
    split("cold noop mod1 export", s, " ")
    printf "tool\tcold\tno-op\tone-file\texport\n"
    for (i=1;i<=n;i++) { k=order[i]; printf "%s", k
      for (j=1;j<=4;j++) printf "\t%s", ((k,s[j]) in v) ? v[k,s[j]] : "-"; printf "\n" }
    printf "\n"
    split("docker buildah", p, " ")
    for (q=1;q<=2;q++) { if (!(("forge","cold") in m) || !((p[q],"cold") in m)) continue
      printf "forge/%s", p[q]
      for (j=1;j<=4;j++) { a=m["forge",s[j]]; b=m[p[q],s[j]]
        printf "\t%s", (a=="FAIL"||b=="FAIL"||b==0) ? "-" : sprintf("%.3fx", a/b) }
      printf "\n" }
    if (("forge","cold") in m && ("docker","cold") in m) {
      printf "\n" > "/dev/stderr"; printf "targets vs BuildKit: cold <= 0.5x: %s; no-op < 0.050 s: %s and <= 0.333x: %s; one-file <= 0.333x: %s; export <= 0.5x: %s\n",
        (m["forge","cold"] <= 0.5*m["docker","cold"]) ? "MET" : "MISSED",
        (m["forge","noop"] < 0.05) ? "MET" : "MISSED",
        (m["forge","noop"] <= m["docker","noop"]/3) ? "MET" : "MISSED",
        (m["forge","mod1"] <= m["docker","mod1"]/3) ? "MET" : "MISSED",
        (m["forge","export"] <= 0.5*m["docker","export"]) ? "MET" : "MISSED" > "/dev/stderr" }
  }' "$RES/results.tsv" 2> "$RES/targets.txt" | column -t -s $'\t'
echo; cat "$RES/targets.txt"
echo
echo "raw data: $RES"
