#!/bin/sh
# busybox-rootfs.sh DEST - build the test base rootfs from Debian's busybox-static:
# the static binary, its applet links in /bin, /etc/passwd and /etc/group with
# root and nobody, /tmp (1777), /root (0700). Deterministic: every mtime is 0.
# Idempotent: DEST is rebuilt in a temporary dir and renamed into place, so a
# reader sees either the old complete rootfs or the new one.
set -eu
dest=${1:?usage: busybox-rootfs.sh DEST}
bb=${BUSYBOX:-/bin/busybox}
[ -x "$bb" ] || { echo "busybox-rootfs.sh: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
tmp=$(mktemp -d "$(dirname "$dest")/.rootfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/tmp" "$tmp/root" "$tmp/proc" "$tmp/sys" "$tmp/dev"
chmod 0755 "$tmp" "$tmp/bin" "$tmp/etc" "$tmp/proc" "$tmp/sys" "$tmp/dev"
chmod 1777 "$tmp/tmp"
chmod 0700 "$tmp/root"
install -m 0755 "$bb" "$tmp/bin/busybox"
# Absolute links to /bin/busybox, as `busybox --install -s /bin` makes them.
for applet in $("$bb" --list); do
    [ "$applet" = busybox ] && continue
    ln -s /bin/busybox "$tmp/bin/$applet"
done
cat > "$tmp/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$tmp/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
GROUP
chmod 0644 "$tmp/etc/passwd" "$tmp/etc/group"
find "$tmp" -exec touch -h -d @0 {} +
rm -rf "$dest.old"
[ -e "$dest" ] && mv "$dest" "$dest.old"
mv "$tmp" "$dest"
rm -rf "$dest.old"
trap - EXIT
