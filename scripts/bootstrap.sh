#!/usr/bin/env bash
# Idempotent set-up for `make demo` and `make test`:
#   1. Debian packages: PostgreSQL 15, PL/Python, venv support, the server headers and a
#      C compiler (apt-get only if missing);
#   2. two venvs, made with the same Python that PL/Python embeds:
#      - the one the *server* imports from, with what scoring needs and nothing else
#        (numpy, protobuf, TensorFlow, LiteRT, pgml_ext: the `server` extra), in a place
#        the postgres OS user can read ($PGML_EXT_SERVER_VENV, default /opt/pgml_ext/server);
#      - the one the tests, the CLI and the benchmarks run from, with the dev tools too
#        ($PGML_EXT_VENV, default /opt/pgml_ext/venv); never on PL/Python's path;
#   3. the extension's files (PGXS `make install`);
#   4. a .pth file that puts the server venv on PL/Python's sys.path: new backends see
#      it, no server restart needed.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR=${PG_MAJOR:-15}
# one pg_config for the build and the install (the Makefile passes its own)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
SERVER_VENV=${PGML_EXT_SERVER_VENV:-/opt/pgml_ext/server}
VENV=${PGML_EXT_VENV:-/opt/pgml_ext/venv}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "postgresql-$PG_MAJOR" "postgresql-plpython3-$PG_MAJOR" python3-venv make gcc; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# PGXS (Makefile.global, pg_regress) and the server headers for the extension's one C
# function (src/pgml_ext.c): postgresql-server-dev-15.
[ -f "/usr/lib/postgresql/$PG_MAJOR/lib/pgxs/src/makefiles/pgxs.mk" ] \
  && [ -f "/usr/include/postgresql/$PG_MAJOR/server/postgres.h" ] \
  || missing+=("postgresql-server-dev-$PG_MAJOR")
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The Python that PL/Python embeds (libpython3.X): the venv must match it.
PLPY=/usr/lib/postgresql/$PG_MAJOR/lib/plpython3.so
PYVER=$(ldd "$PLPY" | sed -n 's/.*libpython\(3\.[0-9]*\).*/\1/p' | head -1)
PY=/usr/bin/python$PYVER
[ -x "$PY" ] || { echo "PL/Python uses libpython$PYVER but $PY is missing" >&2; exit 1; }

# VENV REQUIREMENTS...: a venv with those packages (installed again when pyproject.toml
# changes) and this checkout's pgml_ext without its dependencies (always refreshed: the
# server runs this code).
make_venv() {
  local venv=$1 stamp want log
  shift
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv with $PY"
    as_root mkdir -p "$(dirname "$venv")"
    as_root "$PY" -m venv "$venv"
  fi
  stamp="$venv/.pgml_ext-deps"
  want="$(sha256sum pyproject.toml | cut -c1-16) $*"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing $* into $venv (TensorFlow is large: minutes the first time)"
    as_root "$venv/bin/pip" install -q --upgrade pip setuptools wheel
    as_root "$venv/bin/pip" install -q "$@"
    echo "$want" | as_root tee "$stamp" >/dev/null
  fi
  log=$(mktemp)
  as_root "$venv/bin/pip" install -q --no-deps --no-build-isolation --force-reinstall . >"$log" 2>&1 \
    || { cat "$log" >&2; rm -f "$log"; exit 1; }
  rm -f "$log"
  rm -rf build/lib build/bdist* ./*.egg-info
}
mapfile -t server_requirements < <("$PY" -c 'import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["server"]))')
make_venv "$SERVER_VENV" "${server_requirements[@]}"
as_root chmod -R a+rX "$SERVER_VENV"
make_venv "$VENV" ".[server,dev]"

say "installing the extension into $("$PG_CONFIG" --sharedir)/extension"
make -s all PG_CONFIG="$PG_CONFIG"
as_root make -s install PG_CONFIG="$PG_CONFIG" >/dev/null

# Citus for the distributed test tier, built from its source when that is given
PG_MAJOR=$PG_MAJOR PG_CONFIG=$PG_CONFIG bash scripts/citus.sh

SITE=$(/usr/bin/python$PYVER -c 'import sys; print([p for p in sys.path if p.startswith("/usr/local/lib") and p.endswith("dist-packages")][0])')
site_packages=$("$SERVER_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
pth="import sys; 'plpy' in sys.builtin_module_names and '$site_packages' not in sys.path and sys.path.insert(0, '$site_packages')"
if [ "$(cat "$SITE/pgml_ext.pth" 2>/dev/null)" != "$pth" ]; then
  say "putting $site_packages on PL/Python's path ($SITE/pgml_ext.pth; only PL/Python reads it)"
  as_root mkdir -p "$SITE"
  echo "$pth" | as_root tee "$SITE/pgml_ext.pth" >/dev/null
fi
say "ready: pgml_ext $(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml), server venv $SERVER_VENV, tools venv $VENV"
