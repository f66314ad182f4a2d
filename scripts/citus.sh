#!/usr/bin/env bash
# Builds and installs Citus for the distributed test tier (tests/test_citus.py), from the
# source the project is given (../shared/vendor/citus: a release tarball and the patches
# this machine's PostgreSQL headers need), when Citus is not installed yet. Idempotent.
# Without the source it says so and exits 0: the Citus tests then report that they did
# not run. Citus is AGPL-3.0: a test dependency, built here, never shipped.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
say() { printf '\033[1m[citus]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ]; then
  exit 0
fi
source_dir=""
for dir in "${PGML_EXT_CITUS_SOURCE:-}" ../shared/vendor/citus /work/shared/vendor/citus; do
  if [ -n "$dir" ] && compgen -G "$dir/citus-v*.tar.gz" >/dev/null; then
    source_dir=$dir
    break
  fi
done
if [ -z "$source_dir" ]; then
  say "no Citus source (../shared/vendor/citus or \$PGML_EXT_CITUS_SOURCE): the Citus tier will not run"
  exit 0
fi

missing=()
for pkg in libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libselinux1-dev libpam0g-dev \
  libssl-dev libxslt1-dev libreadline-dev libicu-dev uuid-dev autoconf flex bison make gcc patch; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing Debian packages to build Citus: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

tarball=$(compgen -G "$source_dir/citus-v*.tar.gz" | sort | tail -1)
build=${PGML_EXT_HOME:-/var/tmp/pgml_ext}/citus-build
say "building Citus from $tarball (a few minutes on 2 cores)"
rm -rf "$build" && mkdir -p "$build"
tar xzf "$tarball" -C "$build"
src=$(find "$build" -mindepth 1 -maxdepth 1 -type d | head -1)
for p in "$source_dir"/*.patch; do
  [ -e "$p" ] && patch -s -d "$src" -p1 <"$p"
done
log="$build/build.log"
if ! (cd "$src" && ./configure PG_CONFIG="$PG_CONFIG" && make -j"$(nproc)" && as_root make install) \
  >"$log" 2>&1; then
  tail -30 "$log" >&2
  say "building Citus failed (the whole log: $log)"
  exit 1
fi
rm -rf "$build"
say "installed Citus into $("$PG_CONFIG" --pkglibdir)"
