#!/usr/bin/env bash
# Builds `township-postgres:local`, the PostgreSQL of the compose file's PostgreSQL variant
# (docker-compose.postgres.yml), from this host's own `postgresql` package, with no registry: a
# root filesystem holding the server (`postgres`), `pg_isready` for the health check, the
# installation's libraries and shared files, the libraries `ldd` lists for them, the time-zone
# database, and a cluster made at build time (`initdb`, then docker/postgres/township.sql: one
# database and role per service), owned by the non-root user 10001 the container runs as. It is
# imported with `docker import` (nothing is pulled); no shell is needed at run time, as the image
# never runs initdb or pg_ctl.
#
# The cluster's TLS files come from the town's CA at run time (the certs volume), its pg_hba.conf
# from docker/postgres/ (the compose file passes both with -c). A named volume mounted on its data
# directory starts as a copy of the image's cluster, and keeps the data from then on.
#
# The image is rebuilt only when its content changes (a content hash is kept in a label).
# Where images can be pulled, TOWNSHIP_POSTGRES_IMAGE=postgres:16 is the alternative (README).
#
# Usage: docker/postgres-image.sh     Env: TOWNSHIP_POSTGRES_IMAGE_TAG (default township-postgres:local)
set -euo pipefail
cd "$(dirname "$0")/.."
. docker/rootfs.sh

TAG="${TOWNSHIP_POSTGRES_IMAGE_TAG:-township-postgres:local}"
USER_ID=10001
DATA=/var/lib/postgresql/data
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
[ -n "$bin" ] && [ -x "$bin/postgres" ] && [ -x "$bin/initdb" ] \
  || { echo "docker/postgres-image.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
version="$(basename "$(dirname "$bin")")"
lib="/usr/lib/postgresql/$version/lib"
share="/usr/share/postgresql/$version"
command -v docker >/dev/null || { echo "docker/postgres-image.sh: docker is not installed" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "docker/postgres-image.sh: no postgres user (apt-get install postgresql makes it)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/township-postgres.XXXXXX")"
server_pid=
cleanup() {
  [ -z "$server_pid" ] || kill -INT "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
chmod 0755 "$work"
root="$work/root"
mkdir -p "$root"/{etc,tmp,usr/share/postgresql} "$root$bin" "$root$lib" "$root$(dirname "$DATA")"
chmod 1777 "$root/tmp"

# The programs, the installation's libraries (plpgsql and the other modules; not the LLVM JIT,
# which is turned off) and shared files, at the paths the server looks for them.
cp -L "$bin/postgres" "$bin/pg_isready" "$root$bin/"
cp -a "$lib/." "$root$lib/"
rm -rf "$root$lib"/llvmjit* "$root$lib/bitcode"
cp -a "$share" "$root/usr/share/postgresql/"
cp -a /usr/share/zoneinfo "$root/usr/share/zoneinfo"
copy_libraries "$root" "$root$bin"/* "$root$lib"/*.so
add_user "$root" postgres PostgreSQL "$DATA"

# The cluster: initdb as the host's postgres user (initdb refuses root), the roles and databases
# made by a server started on a private socket only, then handed to uid 10001.
cluster="$work/data"
mkdir -m 0700 "$cluster" && chown postgres "$cluster"
runuser -u postgres -- "$bin/initdb" -D "$cluster" -U postgres -E UTF8 --locale=C \
  --auth-local=trust --auth-host=reject >"$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log" >&2; exit 1; }
mkdir "$work/socket" && chown postgres "$work/socket"
# setpriv execs the server itself, so that its PID is the postmaster's.
setpriv --reuid postgres --regid postgres --init-groups "$bin/postgres" -D "$cluster" -c listen_addresses= \
  -c unix_socket_directories="$work/socket" >"$work/postgres.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  "$bin/pg_isready" -q -h "$work/socket" && break
  sleep 0.1
done
runuser -u postgres -- "$bin/psql" -q -v ON_ERROR_STOP=1 -h "$work/socket" -U postgres -d postgres \
  -f docker/postgres/township.sql >"$work/psql.log" 2>&1 \
  || { cat "$work/psql.log" "$work/postgres.log" >&2; exit 1; }
kill -INT "$server_pid"
wait "$server_pid" || true
server_pid=
# The settings every start needs (the compose file adds the TLS files and pg_hba.conf).
cat >>"$cluster/postgresql.conf" <<CONF

# township-postgres: TCP only (no socket directory in a read-only container), no JIT.
listen_addresses = '*'
unix_socket_directories = ''
jit = off
CONF
mv "$cluster" "$root$DATA"
chown -R "$USER_ID:$USER_ID" "$root$DATA"
chmod 0700 "$root$DATA"

import_rootfs "$root" "$TAG" township.postgres.sha256 \
  "Township's PostgreSQL $version, from $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-the host}")'s package" \
  --change "ENV PATH=$bin:/usr/bin:/bin PGDATA=$DATA" \
  --change "USER $USER_ID:$USER_ID" \
  --change "CMD [\"postgres\", \"-D\", \"$DATA\"]"
