#!/bin/bash
# scripts/build-example.sh [EXAMPLE] - the main job on a fresh machine:
# builds forge, makes the busybox base image (Debian's busybox-static, no
# registry needed), imports it into a store, and builds examples/EXAMPLE
# (default static-site) as EXAMPLE:latest. Store: $FORGE_ROOT, default
# ./.forge-example. Needs root (the build sandbox uses namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
example=${1:-static-site}
[[ -f examples/$example/Dockerfile ]] || { echo "no examples/$example/Dockerfile" >&2; exit 2; }
if ! [[ -x /bin/busybox ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
cargo build --release -q -p forge
forge=$PWD/target/release/forge
export FORGE_ROOT=${FORGE_ROOT:-$PWD/.forge-example}
if ! "$forge" inspect busybox:latest >/dev/null 2>&1; then
    base=$(mktemp -d)
    trap 'rm -rf "$base"' EXIT
    testdata/busybox-rootfs.sh "$base/rootfs"
    tar -C "$base/rootfs" -cf "$base/rootfs.tar" .
    "$forge" import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' "$base/rootfs.tar" busybox:latest >/dev/null
fi
secret=()
export FORGE_EXAMPLE_TOKEN=${FORGE_EXAMPLE_TOKEN:-s3cr3t-example-token}
[[ $example == cache-secret ]] && secret=(--secret id=token,env=FORGE_EXAMPLE_TOKEN)
"$forge" build --progress=plain "${secret[@]}" -t "$example:latest" "examples/$example"
"$forge" images "$example"
