#!/usr/bin/env bash
# Builds `township-etcd:local`, the etcd of the compose file's PostgreSQL variant
# (docker-compose.postgres.yml: three members, on which the three lock-servers elect their
# leader), from this host's own `etcd-server` and `etcd-client` packages, with no registry: a root
# filesystem holding `etcd`, `etcdctl` (the health check), the libraries `ldd` lists for them, the
# time-zone database, /etc/passwd and /etc/group with the non-root user 10001 the container runs
# as, and an empty data directory /var/lib/etcd it owns (mode 0700, as etcd wants). It is imported
# with `docker import` (nothing is pulled); no shell is needed at run time.
#
# Everything else comes from the compose file: each member's name and cluster, its certificate
# from the town's CA (the certs volume; clients and peers must show one too), and a named volume
# on /var/lib/etcd that keeps its data.
#
# The image is rebuilt only when its content changes (a content hash is kept in a label).
#
# Usage: docker/etcd-image.sh     Env: TOWNSHIP_ETCD_IMAGE_TAG (default township-etcd:local)
set -euo pipefail
cd "$(dirname "$0")/.."
. docker/rootfs.sh

TAG="${TOWNSHIP_ETCD_IMAGE_TAG:-township-etcd:local}"
USER_ID=10001
DATA=/var/lib/etcd
for program in etcd etcdctl; do
  command -v "$program" >/dev/null \
    || { echo "docker/etcd-image.sh: $program is not installed (apt-get install etcd-server etcd-client)" >&2; exit 1; }
done
command -v docker >/dev/null || { echo "docker/etcd-image.sh: docker is not installed" >&2; exit 1; }
version="$(etcd --version | sed -n 's/^etcd Version: //p')"

work="$(mktemp -d "${TMPDIR:-/tmp}/township-etcd.XXXXXX")"
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
root="$work/root"
mkdir -p "$root"/{etc,tmp,usr/bin,usr/share,var/lib}
chmod 1777 "$root/tmp"

cp -L "$(command -v etcd)" "$(command -v etcdctl)" "$root/usr/bin/"
copy_libraries "$root" "$root"/usr/bin/*
cp -a /usr/share/zoneinfo "$root/usr/share/zoneinfo"
add_user "$root" etcd etcd "$DATA"
mkdir -m 0700 "$root$DATA"
chown "$USER_ID:$USER_ID" "$root$DATA"

import_rootfs "$root" "$TAG" township.etcd.sha256 \
  "Township's etcd $version, from $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-the host}")'s package" \
  --change "ENV PATH=/usr/bin ETCD_DATA_DIR=$DATA" \
  --change "USER $USER_ID:$USER_ID" \
  --change 'CMD ["etcd"]'
