#!/usr/bin/env bash
# Builds the base image the Dockerfile starts FROM by default, `township-base:local`, from this
# host's own files, with no registry: a root filesystem holding only the dynamic loader and the
# shared libraries that `ldd` lists for Township's binaries (glibc, libm, libgcc_s), the time-zone
# database, /etc/passwd and /etc/group with the non-root user `township` (uid/gid 10001), and /tmp.
# It is imported with `docker import` (nothing is pulled) in a few seconds.
#
# The image is rebuilt only when its content changes (a content hash is kept in a label), so the
# Township image's build cache survives repeated runs.
#
# On a machine that can pull images this script is optional: build with
#   --build-arg BASE_IMAGE=debian:bookworm-slim   (or TOWNSHIP_BASE_IMAGE=... for compose)
# provided the host's glibc is not newer than the base image's (Debian 12 has glibc 2.36).
#
# Usage: docker/base-image.sh [BINARY...]   (default: Township's binaries in target/release/)
# Env:   TOWNSHIP_BASE_IMAGE_TAG (default township-base:local)
set -euo pipefail
cd "$(dirname "$0")/.."

TAG="${TOWNSHIP_BASE_IMAGE_TAG:-township-base:local}"
USER_ID=10001
if [ "$#" -gt 0 ]; then
  BINARIES=("$@")
else
  BINARIES=()
  for bin in time-server doctor-server chat-server phonebook-server bank-server lock-server township; do
    BINARIES+=("target/release/$bin")
  done
fi
for bin in "${BINARIES[@]}"; do
  [ -x "$bin" ] || { echo "docker/base-image.sh: $bin is missing (run: cargo build --release --workspace --bins)" >&2; exit 1; }
done
command -v docker >/dev/null || { echo "docker/base-image.sh: docker is not installed" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/township-base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{etc,tmp,usr/share}
chmod 1777 "$root/tmp"

# The loader and every library the binaries need, at the paths the loader looks for them (the
# paths ldd prints: the loader's own path is the binary's PT_INTERP, the libraries' paths are in
# the loader's default search list, so no ld.so.cache is needed).
libs="$(for bin in "${BINARIES[@]}"; do ldd "$bin"; done | awk '
  $2 == "=>" && $3 ~ /^\// { print $3 }
  $1 ~ /^\// { print $1 }' | sort -u)"
[ -n "$libs" ] || { echo "docker/base-image.sh: ldd listed no libraries (static binaries need no base libraries)" >&2; }
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

# Time-zone data (chrono-tz compiles its own copy in; this serves anything that reads the system's,
# e.g. TZ=Europe/Paris for local times) and UTC as the local time.
if [ -d /usr/share/zoneinfo ]; then
  cp -a /usr/share/zoneinfo "$root/usr/share/zoneinfo"
  ln -s /usr/share/zoneinfo/UTC "$root/etc/localtime"
else
  echo "docker/base-image.sh: warning: /usr/share/zoneinfo not found on this host; the image has no tz data" >&2
fi

cat >"$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
township:x:$USER_ID:$USER_ID:Township:/data:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<GROUP
root:x:0:
township:x:$USER_ID:
nogroup:x:65534:
GROUP
echo "hosts: files dns" >"$root/etc/nsswitch.conf"

# A deterministic tar (sorted, fixed times and owners) so that the same content gives the same hash.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/rootfs.tar" .
hash="$(sha256sum "$work/rootfs.tar" | cut -c1-64)"
current="$(docker image inspect --format '{{ index .Config.Labels "township.base.sha256" }}' "$TAG" 2>/dev/null || true)"
if [ "$current" = "$hash" ]; then
  echo "docker/base-image.sh: $TAG is up to date ($(du -sh "$work/rootfs.tar" | cut -f1) root filesystem)"
  exit 0
fi
previous="$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"
docker import \
  --change "LABEL township.base.sha256=$hash" \
  --change "ENV PATH=/usr/local/bin:/usr/bin:/bin" \
  --message "Township base: loader, libraries and tz data from $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-the host}")" \
  "$work/rootfs.tar" "$TAG" >/dev/null
# The replaced base, now untagged, goes too (docker refuses while an image built on it remains).
[ -z "$previous" ] || docker image rm "$previous" >/dev/null 2>&1 || true
echo "docker/base-image.sh: built $TAG ($(docker image inspect --format '{{ .Size }}' "$TAG" | awk '{ printf "%.1f MB", $1 / 1e6 }')) from: $(echo $libs | tr '\n' ' ')"
