#!/usr/bin/env bash
# What the images made from this host's packages share (docker/postgres-image.sh,
# docker/etcd-image.sh), sourced by them: copying the libraries a program needs into a root
# filesystem, its user, and importing that root filesystem as an image only when its content changed.

# copy_libraries ROOT FILE...: the dynamic loader and every library `ldd` lists for the FILEs, at
# the same paths under ROOT (the paths the loader looks in, so no ld.so.cache is needed).
copy_libraries() {
  local root=$1 so libs
  shift
  libs="$(for f in "$@"; do ldd "$f" 2>/dev/null || true; done | awk '
    $2 == "=>" && $3 ~ /^\// { print $3 }
    $1 ~ /^\// { print $1 }' | sort -u)"
  for so in $libs; do
    mkdir -p "$root$(dirname "$so")"
    cp -L "$so" "$root$so"
  done
}

# add_user ROOT NAME GECOS HOME: /etc/passwd and /etc/group under ROOT with root and NAME as the
# non-root user 10001 the containers run as (no login shell), and an nsswitch.conf that resolves
# names from files, then DNS.
add_user() {
  local root=$1 name=$2 gecos=$3 home=$4
  cat >"$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
$name:x:10001:10001:$gecos:$home:/sbin/nologin
PASSWD
  cat >"$root/etc/group" <<GROUP
root:x:0:
$name:x:10001:
GROUP
  echo "hosts: files dns" >"$root/etc/nsswitch.conf"
}

# import_rootfs ROOT TAG LABEL MESSAGE [--change INSTRUCTION]...: imports ROOT as the image TAG
# (`docker import`: nothing is pulled), unless TAG already holds the same content. ROOT is packed
# as a deterministic tar (sorted, fixed times, numeric owners kept), whose sha256 is kept in the
# image's label LABEL; the image it replaces is removed. Prints what it did, prefixed with the
# calling script's name.
import_rootfs() {
  local root=$1 tag=$2 label=$3 message=$4 script tar hash current previous
  shift 4
  script="docker/$(basename "$0")"
  tar="$(mktemp "${TMPDIR:-/tmp}/township-rootfs.XXXXXX")"
  tar --sort=name --mtime=@0 --numeric-owner -C "$root" -cf "$tar" .
  hash="$(sha256sum "$tar" | cut -c1-64)"
  current="$(docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$tag" 2>/dev/null || true)"
  if [ "$current" = "$hash" ]; then
    echo "$script: $tag is up to date"
    rm -f "$tar"
    return 0
  fi
  previous="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
  docker import --change "LABEL $label=$hash" "$@" --message "$message" "$tar" "$tag" >/dev/null
  [ -z "$previous" ] || docker image rm "$previous" >/dev/null 2>&1 || true
  echo "$script: built $tag ($(du -sh "$tar" | cut -f1))"
  rm -f "$tar"
}
