#!/bin/bash
# scripts/test.sh - run every test of the workspace on a fresh machine.
# Installs the Debian packages the tests drive for real (peers that read our
# output, the busybox base image), then runs `cargo test --workspace`.
# Extra arguments go to cargo test (e.g. `scripts/test.sh -p forge-oci`).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(busybox-static skopeo umoci zstd docker-registry apache2-utils openssl procps tar)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "+ installing ${missing[*]}"
    if [[ $(id -u) == 0 ]]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The conformance vectors live beside the project (../shared/conformance).
if [[ ! -d ../shared/conformance ]]; then
    echo "scripts/test.sh: ../shared/conformance is missing (it sits beside the project)" >&2
    exit 1
fi

exec cargo test --workspace "$@"
