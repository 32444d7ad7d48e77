#!/usr/bin/env bash
# Stages the image's contents in target/docker/ (the only part of the repository the docker build
# context sends, see .dockerignore): the release binaries with their debug info stripped (symbols
# stay, for backtraces) and the empty /data directory the image hands to the non-root user.
# Run it after `cargo build --release --workspace --bins`; it builds nothing itself.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every binary the image carries: the servers and the `township` CLI (health checks use it).
BINARIES=(time-server doctor-server chat-server phonebook-server bank-server lock-server township)
RELEASE=target/release
OUT=target/docker

missing=()
for bin in "${BINARIES[@]}"; do
  [ -x "$RELEASE/$bin" ] || missing+=("$bin")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "docker/stage.sh: missing in $RELEASE/: ${missing[*]} (run: cargo build --release --workspace --bins)" >&2
  exit 1
fi

rm -rf "$OUT/bin.new"
mkdir -p "$OUT/bin.new" "$OUT/data"
for bin in "${BINARIES[@]}"; do
  if command -v strip >/dev/null 2>&1; then
    strip --strip-debug -o "$OUT/bin.new/$bin" "$RELEASE/$bin"
  else
    cp "$RELEASE/$bin" "$OUT/bin.new/$bin"
  fi
  chmod 0755 "$OUT/bin.new/$bin"
done
rm -rf "$OUT/bin"
mv "$OUT/bin.new" "$OUT/bin"
chmod 0755 "$OUT/data"
echo "docker/stage.sh: staged $(du -sh "$OUT/bin" | cut -f1) of binaries in $OUT/bin (${BINARIES[*]})"
