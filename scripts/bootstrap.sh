# Installs what building and testing Watchroom needs, skipping whatever is already there.
# Sourced by scripts/run and scripts/test.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_LEPTOS_VERSION=0.3.10
# cargo-installed tools (wasm-opt above all: Debian's older one breaks hydration) come first.
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    say "apt-get update"
    as_root apt-get update -q
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# The wasm-bindgen CLI must match the library version the lock file pins.
locked_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

ensure_build_tools() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! rustup component list --installed | grep -qx rust-src; then
    say "adding the standard library's source, for the release wasm"
    rustup component add rust-src
  fi
  if [ "$(cargo leptos --version 2>/dev/null)" != "cargo-leptos $CARGO_LEPTOS_VERSION" ]; then
    say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 10 minutes on 2 cores)"
    cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked
  fi
  local bindgen
  bindgen="$(locked_version wasm-bindgen)"
  if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $bindgen" ]; then
    say "installing wasm-bindgen-cli $bindgen (about 2 minutes)"
    # Without --locked: its lock file names a dependency the registry no longer serves.
    cargo install wasm-bindgen-cli --version "$bindgen"
  fi
  if [ ! -x "$HOME/.cargo/bin/wasm-opt" ]; then
    # It builds binaryen from C++ source.
    command -v c++ >/dev/null || apt_install g++
    say "installing wasm-opt from crates.io (about 5 minutes)"
    cargo install wasm-opt --locked
  fi
}

# `cargo leptos COMMAND` (build, serve) on the release site, as it is shipped. Its wasm has a
# standard library of its own, built for size and with panics that abort at once, so that no panic
# message, location or formatting code reaches the page (docs/benchmarks.md, "The page's weight").
# These are cargo's unstable flags, which RUSTC_BOOTSTRAP allows on the stable toolchain for this
# build alone; a plain `cargo leptos build --release` builds the same site with the prebuilt one.
release_site() {
  local command=$1
  shift
  RUSTC_BOOTSTRAP=1 cargo leptos "$command" --release --split --precompress \
    --lib-cargo-args=-Zbuild-std=std,panic_abort \
    --lib-cargo-args=-Zbuild-std-features=optimize_for_size \
    --lib-cargo-args=-Zpanic-immediate-abort \
    '--lib-cargo-args=--config=profile.wasm-release.panic="immediate-abort"' \
    "$@"
}

ensure_postgres_binaries() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
    apt_install postgresql
  fi
}

ensure_test_tools() {
  # The scale-out tests run Redis servers of their own, on ports of their own.
  command -v redis-server >/dev/null || apt_install redis-server
  command -v chromium >/dev/null || apt_install chromium
  command -v npm >/dev/null || apt_install nodejs npm
  local e2e="$ROOT/end2end"
  if [ ! -f "$e2e/node_modules/.package-lock.json" ] ||
     [ "$e2e/package-lock.json" -nt "$e2e/node_modules/.package-lock.json" ]; then
    say "installing the browser test runner (npm ci)"
    (cd "$e2e" && npm ci --no-audit --no-fund)
  fi
}

pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -n "$dir" ]; then echo "$dir/$1"; else command -v "$1"; fi
}

# Tests need a Postgres on TCP where `postgres` may connect without a password. Use the machine's
# when it answers so on 5432; otherwise run a private one for the tests. $1 names the database
# (default watchroom_test), created if missing; with `empty` as $2 it is dropped first, so every
# run starts as a fresh machine does.
ensure_test_database() {
  # The browser tests make scratch databases beside the test database with it.
  PSQL="$(pg_bin psql)"
  export PSQL
  if [ -n "${DATABASE_URL:-}" ]; then return; fi
  local name="${1:-watchroom_test}" host=127.0.0.1 port=5432
  if ! "$(pg_bin psql)" -w -h $host -p $port -U postgres -d postgres -tAc "SELECT 1" >/dev/null 2>&1; then
    # Under /tmp: as root the cluster runs as `postgres`, which must be able to reach its directory.
    local dir="${TMPDIR:-/tmp}/watchroom-test-postgres-$(id -u)" run=()
    port=55432
    if [ "$(id -u)" = 0 ]; then run=(runuser -u postgres --); fi
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      say "no passwordless Postgres on 127.0.0.1:5432; creating a private one for the tests"
      "${run[@]}" "$(pg_bin initdb)" -D "$dir/data" -A trust -U postgres -E UTF8 >/dev/null
    fi
    if ! "$(pg_bin pg_isready)" -q -h $host -p $port; then
      say "starting the private test Postgres on 127.0.0.1:$port"
      "${run[@]}" "$(pg_bin pg_ctl)" -D "$dir/data" -l "$dir/log" -w \
        -o "-p $port -k '$dir' -c listen_addresses=127.0.0.1" start >/dev/null
    fi
  fi
  local psql=("$(pg_bin psql)" -w -h $host -p $port -U postgres -d postgres)
  if [ "${2:-}" = empty ]; then
    "${psql[@]}" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)"
  fi
  "${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1 ||
    "${psql[@]}" -qc "CREATE DATABASE $name"
  export DATABASE_URL="postgres://postgres@$host:$port/$name"
}
