#!/bin/bash
# compare-peers.sh - build Dockerfile cases with forge, docker 20.10's BuildKit and `buildah bud`,
# and compare the results: rootfs trees, config fields and history.
#
# Usage: scripts/compare-peers.sh [CASE_DIR...]
#   A case is a directory with a Dockerfile and its context. Optional files in the case dir
#   (they are part of the context; a case that copies `.` should .dockerignore them):
#     peers.args   extra build flags, one per line, given to all three tools (e.g. --target x)
#     expected     testdata/build's file: its arg/target/file/flag/secret/setenv/parent lines
#                  become build options for every tool; `fails`/`http` cases are skipped
#   Default cases: every directory under testdata/build/ that has a Dockerfile, else
#   testdata/peers/cases/*.
#   env: PEERS="docker buildah"   peers to compare forge against
#        FORGE=path               forge binary (default target/release/forge; not rebuilt)
#        LAB=/tmp/forge-peers     work dir (dockerd data-root and socket, stores, unpacked images)
#        KEEP=1                   keep the unpacked trees and dumps under $LAB/work
#
# Each tool gets the same busybox base named busybox:latest: forge imports
# testdata/busybox-rootfs.sh's tree; `forge save` writes it as a docker-archive for `docker load`
# and an oci-archive for `buildah pull`. Each result is exported (forge save --format
# oci-archive, docker save, buildah push oci-archive), copied to an OCI layout with skopeo,
# unpacked with umoci, and dumped:
#   tree    one line per path: type, mode (octal with suid/sgid/sticky), uid:gid, size and
#           sha256 of regular files, link target of symlinks (mtimes ignored)
#   config  Env Cmd Entrypoint WorkingDir User ExposedPorts Volumes Labels StopSignal
#           Healthcheck OnBuild Shell (null, [], {} and "" count as unset)
#   history created_by and empty_layer, one line per entry
# A difference line reads `tree - LINE` (forge only) / `tree + LINE` (peer only),
# `config FIELD forge=JSON peer=JSON`, `history[i] forge=... peer=...`, or `build failed: ...`.
# testdata/peers/accepted.txt lists accepted differences, one per line:
#     PEER :: CASE-GLOB :: ERE matched against the difference line :: reason
# Output: one line per case and peer, SAME / ACCEPTED / DIFF / SKIP; under a DIFF every difference
# (accepted ones marked with the accepted.txt line that accepts them; VERBOSE=1 lists them for
# ACCEPTED cases too). Exit status 1 when any difference is not accepted.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAB=${LAB:-/tmp/forge-peers}
PEERS=${PEERS:-"docker buildah"}
FORGE=${FORGE:-$ROOT/target/release/forge}
ACCEPTED=$ROOT/testdata/peers/accepted.txt
W=$LAB/work
FS=$LAB/forge-store
F="$FORGE --root $FS"
DOCKER_SOCK=$LAB/docker.sock
D="/usr/bin/docker -H unix://$DOCKER_SOCK"        # Debian's 20.10 client: has BuildKit
BS=$LAB/buildah
B="buildah --root $BS/root --runroot $BS/run --storage-driver overlay"

if [[ $# -gt 0 ]]; then
    CASES=("$@")
else
    CASES=()
    for d in "$ROOT"/testdata/build/*/; do [[ -f $d/Dockerfile ]] && CASES+=("${d%/}"); done
    if [[ ${#CASES[@]} == 0 ]]; then
        for d in "$ROOT"/testdata/peers/cases/*/; do CASES+=("${d%/}"); done
    fi
fi
[[ -x $FORGE ]] || { echo "no forge binary at $FORGE (cargo build --release -p forge)" >&2; exit 2; }

mkdir -p "$LAB" "$W"
LOG=$LAB/compare.log
: > "$LOG"

# ------------------------------------------------------------------ dockerd
STARTED_DOCKERD=0
start_dockerd() {
    $D info >/dev/null 2>&1 && return 0
    mkdir -p "$LAB/docker" "$LAB/docker-exec"
    echo "+ starting dockerd (data-root $LAB/docker/data, socket $DOCKER_SOCK)" >&2
    setsid /usr/sbin/dockerd --data-root "$LAB/docker/data" --exec-root "$LAB/docker-exec" \
        --host "unix://$DOCKER_SOCK" --pidfile "$LAB/docker.pid" \
        > "$LAB/dockerd.log" 2>&1 < /dev/null &
    STARTED_DOCKERD=1
    for _ in $(seq 150); do $D info >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "dockerd did not start; see $LAB/dockerd.log" >&2; return 1
}
stop_dockerd() {
    [[ -f $LAB/docker.pid ]] || return 0
    local pid; pid=$(cat "$LAB/docker.pid")
    if kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/cmdline"; then
        echo "+ stopping dockerd pid $pid" >&2
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
}
cleanup() { [[ $STARTED_DOCKERD == 1 ]] && stop_dockerd; return 0; }
trap cleanup EXIT
trap "exit 130" INT TERM

# ------------------------------------------------------------------ base image everywhere
setup_base() {
    local bb=$LAB/base/rootfs
    mkdir -p "$LAB/base"
    "$ROOT/testdata/busybox-rootfs.sh" "$bb" || return 1
    tar -C "$bb" -cf "$LAB/base/rootfs.tar" . || return 1
    rm -rf "$FS"
    $F import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' "$LAB/base/rootfs.tar" busybox:latest >>"$LOG" 2>&1 || return 1
    $F save -o "$LAB/base/docker.tar" busybox:latest 2>>"$LOG" || return 1
    $F save --format oci-archive -o "$LAB/base/oci.tar" busybox:latest 2>>"$LOG" || return 1
    if [[ " $PEERS " == *" docker "* ]]; then
        start_dockerd || return 1
        $D system prune -af >/dev/null 2>&1
        $D load -q -i "$LAB/base/docker.tar" >>"$LOG" 2>&1 || return 1
    fi
    if [[ " $PEERS " == *" buildah "* ]]; then
        $B rm -a >/dev/null 2>&1; $B rmi -a -f >/dev/null 2>&1; rm -rf "$BS"
        $B pull -q "oci-archive:$LAB/base/oci.tar" >>"$LOG" 2>&1 || return 1
        $B tag localhost/busybox:latest docker.io/library/busybox:latest || return 1
    fi
}

# ------------------------------------------------------------------ build + export
# build_export TOOL CASE_DIR NAME -> OCI layout $W/NAME/TOOL/oci:img, else returns 1
build_export() {
    local tool=$1 dir=$2 name=$3 out=$W/$3/$1 tag=peers-$3:latest
    rm -rf "$out"; mkdir -p "$out"
    local pd pt
    for pd in "${PARENTS[@]}"; do     # "DIR TAG", built first, in order
        read -r pd pt <<< "$pd"
        build_only "$tool" "$pd" "$pt" "$out/parent.log" || { cp "$out/parent.log" "$out/build.log"; return 1; }
    done
    local args=("${ARGS[@]}")
    if [[ $tool == docker ]]; then
        # 20.10 would pull docker/dockerfile:<v> for a `# syntax=` line (no network here) and
        # fail; its built-in frontend (BuildKit 0.8) has RUN --mount, so build without the line
        local df=$dir/Dockerfile i
        for ((i=0; i<${#args[@]}; i++)); do [[ ${args[i]} == -f ]] && df=${args[i+1]}; done
        if grep -qiE '^#[[:space:]]*syntax[[:space:]]*=' "$df"; then
            grep -viE '^#[[:space:]]*syntax[[:space:]]*=' "$df" > "$out/Dockerfile.nosyntax"
            for ((i=0; i<${#args[@]}; i++)); do [[ ${args[i]} == -f ]] && args[i+1]=$out/Dockerfile.nosyntax; done
            [[ $df == "$dir/Dockerfile" ]] && args+=(-f "$out/Dockerfile.nosyntax")
        fi
    fi
    build_only "$tool" "$dir" "$tag" "$out/build.log" "${args[@]}" || return 1
    case $tool in
    forge)
        $F save --format oci-archive -o "$out/image.tar" "$tag" >> "$out/build.log" 2>&1 &&
        skopeo copy -q "oci-archive:$out/image.tar" "oci:$out/oci:img" >> "$out/build.log" 2>&1 ;;
    docker)
        $D save -o "$out/image.tar" "$tag" >> "$out/build.log" 2>&1 &&
        skopeo copy -q "docker-archive:$out/image.tar" "oci:$out/oci:img" >> "$out/build.log" 2>&1 ;;
    buildah)
        $B push -q "$tag" "docker-archive:$out/image.tar" >> "$out/build.log" 2>&1 &&
        skopeo copy -q "docker-archive:$out/image.tar" "oci:$out/oci:img" >> "$out/build.log" 2>&1 ;;
    esac || return 1
    umoci unpack --image "$out/oci:img" "$out/bundle" >> "$out/build.log" 2>&1 || return 1
    skopeo inspect --config "oci:$out/oci:img" > "$out/config.json" 2>>"$out/build.log" || return 1
    dump "$out"
}

# build_only TOOL DIR TAG LOG [ARGS...]
build_only() {
    local tool=$1 dir=$2 tag=$3 log=$4; shift 4
    case $tool in
    forge)
        env "${SETENV[@]}" $F build --progress=plain -t "$tag" "$@" "$dir" > "$log" 2>&1 ;;
    docker)
        env "${SETENV[@]}" DOCKER_BUILDKIT=1 $D build --progress=plain -t "$tag" "$@" "$dir" > "$log" 2>&1 ;;
    buildah)
        # chroot isolation needs host networking; runc since crun 1.8 fails on this VM's cgroups;
        # docker format, else buildah drops ONBUILD, HEALTHCHECK, SHELL from the config
        env "${SETENV[@]}" $B bud --format docker --layers --pull=false --runtime runc --isolation chroot \
            --network host -t "$tag" "$@" "$dir" > "$log" 2>&1 ;;
    esac
}

# case_options DIR: ARGS, SETENV, PARENTS, SKIP from DIR/expected (testdata/build's
# format, see testdata/build/README.md) and DIR/peers.args (extra flags, one per line)
case_options() {
    local dir=$1 k v
    ARGS=() SETENV=(PATH="$PATH") PARENTS=() SKIP=""
    [[ -f $dir/peers.args ]] && mapfile -t ARGS < "$dir/peers.args"
    [[ -f $dir/expected ]] || return 0
    while read -r k v; do
        case $k in
        arg)    ARGS+=(--build-arg "$v") ;;
        target) ARGS+=(--target "$v") ;;
        file)   ARGS+=(-f "$dir/$v") ;;
        flag)   ARGS+=("$v") ;;
        secret) ARGS+=(--secret "$(sed "s|src=|src=$dir/|" <<< "$v")") ;;
        setenv) SETENV+=("$v") ;;
        parent) PARENTS+=("$dir/$v") ;;
        fails)  SKIP="expected to fail" ;;
        http)   SKIP="needs the suite's HTTP server" ;;
        esac
    done < "$dir/expected"
}
dump() {   # dump OUTDIR: tree.txt and meta.txt
    local out=$1
    python3 - "$out/bundle/rootfs" > "$out/tree.txt" <<'PY'
import hashlib, os, stat, sys
root = sys.argv[1]
def line(rel, st, full):
    m = st.st_mode
    t = ("d" if stat.S_ISDIR(m) else "l" if stat.S_ISLNK(m) else "f" if stat.S_ISREG(m)
         else "p" if stat.S_ISFIFO(m) else "c" if stat.S_ISCHR(m) else "b" if stat.S_ISBLK(m)
         else "s" if stat.S_ISSOCK(m) else "?")
    extra = ""
    if t == "f":
        h = hashlib.sha256()
        with open(full, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        extra = " size=%d sha256=%s" % (st.st_size, h.hexdigest()[:16])
    elif t == "l":
        extra = " -> " + os.readlink(full)
    elif t in "cb":
        extra = " dev=%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
    print("%s %s %04o %d:%d%s" % (rel, t, stat.S_IMODE(m), st.st_uid, st.st_gid, extra))
line("/", os.lstat(root), root)
for dp, dns, fns in os.walk(root):
    dns.sort()
    for n in sorted(dns + fns):
        full = os.path.join(dp, n)
        line("/" + os.path.relpath(full, root), os.lstat(full), full)
PY
    # config fields (unset/empty normalised away), then history
    jq -r '
      def unset: . == null or . == [] or . == {} or . == "";
      (.config // {}) as $c
      | (["Env","Cmd","Entrypoint","WorkingDir","User","ExposedPorts","Volumes","Labels",
          "StopSignal","Healthcheck","OnBuild","Shell"][]
         | . as $k | "config \($k) \(if ($c[$k] | unset) then "unset" else ($c[$k] | tojson) end)"),
        ((.history // []) | to_entries[]
         | "history[\(.key)] \(.value.empty_layer // false | if . then "empty" else "layer" end) \(.value.created_by // "")")
    ' "$out/config.json" > "$out/meta.txt"
}

# compare_one NAME PEER -> difference lines on stdout
compare_one() {
    local a=$W/$1/forge b=$W/$1/$2
    diff <(cat "$a/tree.txt") <(cat "$b/tree.txt") | sed -n 's/^< /tree - /p; s/^> /tree + /p'
    python3 - "$a/meta.txt" "$b/meta.txt" <<'PY'
import sys
def load(p):
    d = {}
    for l in open(p, encoding="utf-8"):
        k, _, v = l.rstrip("\n").partition(" ")
        d[k] = v
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
keys = [k for k in a if k.startswith("config")]
hist = sorted({k for k in list(a) + list(b) if k.startswith("history")},
              key=lambda k: int(k[8:-1]))
for k in keys:
    f, _, av = a[k].partition(" ")
    _, _, bv = b.get(k, f + " unset").partition(" ")
    if av != bv:
        print("config %s forge=%s peer=%s" % (f, av, bv))
for k in hist:
    av, bv = a.get(k, "(none)"), b.get(k, "(none)")
    if av != bv:
        print("%s forge=%s peer=%s" % (k, av, bv))
PY
}

# is_accepted PEER CASE LINE -> reason on stdout if accepted
is_accepted() {
    local peer=$1 name=$2 l=$3 p c re reason
    [[ -f $ACCEPTED ]] || return 1
    local n=0
    while IFS= read -r entry; do
        n=$((n+1))
        [[ -z ${entry// } || $entry == \#* ]] && continue
        p=$(awk -F' :: ' '{print $1}' <<< "$entry"); c=$(awk -F' :: ' '{print $2}' <<< "$entry")
        re=$(awk -F' :: ' '{print $3}' <<< "$entry"); reason=$(awk -F' :: ' '{print $4}' <<< "$entry")
        [[ $p == "*" || $p == "$peer" ]] || continue
        # shellcheck disable=SC2053
        [[ $name == $c ]] || continue
        if grep -Eq -- "$re" <<< "$l"; then echo "accepted.txt:$n"; return 0; fi
    done < "$ACCEPTED"
    return 1
}

# ------------------------------------------------------------------ main
echo "compare-peers: forge $FORGE vs $PEERS; ${#CASES[@]} cases; work dir $W" >&2
if ! setup_base; then echo "base image setup failed; see $LOG" >&2; tail -5 "$LOG" >&2; exit 2; fi
status=0
declare -A SUMMARY
for dir in "${CASES[@]}"; do
    dir=$(cd "$dir" && pwd); name=$(basename "$dir")
    # build from a private copy: a peer's rw bind mount can write into the context
    # (buildah 1.28 does), and the cases are not ours to change
    rm -rf "${W:?}/$name"; mkdir -p "$W/$name"; cp -a "$dir" "$W/$name/ctx"; dir=$W/$name/ctx
    case_options "$dir"
    if [[ -n $SKIP ]]; then printf '%-30s %-8s SKIP (%s)\n' "$name" all "$SKIP"; continue; fi
    if ! build_export forge "$dir" "$name"; then
        echo "$name forge: BUILD FAILED (log $W/$name/forge/build.log)"
        tail -3 "$W/$name/forge/build.log" | sed 's/^/    | /'
        status=1; continue
    fi
    for peer in $PEERS; do
        diffs=()
        if ! build_export "$peer" "$dir" "$name"; then
            msg=$(grep -m1 -iE 'error|failed|unknown' "$W/$name/$peer/build.log" | cut -c1-200)
            diffs=("build failed: ${msg:-see $W/$name/$peer/build.log}")
        else
            mapfile -t diffs < <(compare_one "$name" "$peer")
        fi
        if [[ ${#diffs[@]} == 0 ]]; then
            printf '%-30s %-8s SAME\n' "$name" "$peer"; continue
        fi
        out=() unaccepted=0
        for l in "${diffs[@]}"; do
            if reason=$(is_accepted "$peer" "$name" "$l"); then
                out+=("    accepted ($reason): ${l:0:200}")
            else
                out+=("    DIFF: ${l:0:300}"); unaccepted=$((unaccepted+1))
            fi
        done
        if [[ $unaccepted == 0 ]]; then
            printf '%-30s %-8s ACCEPTED (%d)\n' "$name" "$peer" "${#diffs[@]}"
        else
            printf '%-30s %-8s DIFF (%d, %d accepted)\n' "$name" "$peer" "$unaccepted" $((${#diffs[@]}-unaccepted))
            status=1
        fi
        if [[ $unaccepted != 0 || ${VERBOSE:-0} == 1 ]]; then printf '%s\n' "${out[@]}"; fi
    done
done
if [[ ${KEEP:-0} != 1 ]]; then
    find "$W" -mindepth 3 -maxdepth 3 -name bundle -exec rm -rf {} + 2>/dev/null
fi
[[ " $PEERS " == *" buildah "* ]] && { $B rm -a >/dev/null 2>&1; }
exit $status
