#!/usr/bin/env bash
# The README's test command: installs what the tests need when it is missing,
# then runs formatting, lints, the dependency-direction check, every test in
# the workspace and a bounded simulator sweep. Works on a machine that has only
# the Rust toolchain (plus apt-get, as root or via sudo, for redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

# --- redis-server / redis-cli / redis-benchmark: oracle for differential tests
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    say "installing redis-server and redis-tools (differential and end-to-end tests use them)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
    if command -v apt-get >/dev/null 2>&1; then
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
    else
        echo "redis-server is missing and apt-get is not available: install Redis 7.0 by hand" >&2
        exit 1
    fi
fi
# Tests that need redis-server fail instead of skipping from here on.
export CHORUS_REQUIRE_REDIS=1

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

say "dependency direction: no tokio/quinn under the engine, the sans-IO replication core, the site policy or the simulator"
for spec in "chorus-engine" "chorus-replication --no-default-features" "chorus-site" "chorus-sim"; do
    # shellcheck disable=SC2086
    if cargo tree -e normal -p $spec 2>/dev/null | grep -Eq '^[^a-z]*(tokio|quinn) v'; then
        echo "FAIL: $spec depends on tokio or quinn" >&2
        cargo tree -e normal -p $spec | grep -E '(tokio|quinn) v' >&2
        exit 1
    fi
    echo "ok: $spec"
done

say "cargo test (workspace)"
cargo test --workspace

if [ -x target/debug/chorus-sim ]; then
    say "bounded simulator sweep"
    SEEDS=${CHORUS_SIM_SEEDS:-0..100}
    target/debug/chorus-sim sweep --seeds "$SEEDS"
fi

say "all checks passed"
