#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the Python tools it needs into .venv,
# builds the workspace once (tests, the local server and the Lambda binaries share the dev
# profile), checks formatting and lints, and runs every test. The tests start moto_server
# (AWS emulation) and bulk-local themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.requirements.sha256"
wanted=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "==> installing test tools into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r tests/requirements.txt
  echo "$wanted" > "$stamp"
fi
export MOTO_SERVER="$PWD/$venv/bin/moto_server"
export PATH="$PWD/$venv/bin:$PATH"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo build"
cargo build --workspace --all-targets
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
cargo test --workspace --no-fail-fast
