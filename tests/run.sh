#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the Python tools it needs into .venv,
# builds the workspace once (tests, the local server and the Lambda binaries share the dev
# profile), checks formatting and lints, and runs every test. The tests start moto_server
# (AWS emulation), cargo lambda watch (the Lambda runtime emulator) and bulk-local themselves,
# and run cfn-lint and the SAM CLI on template.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.requirements.sha256"
# cargo-lambda (the Lambda runtime emulator) is installed without its dependencies: they are
# only the zig toolchain it uses for cross-compiling, ~400 MB the tests never need.
cargo_lambda="cargo-lambda>=1.9.2"
wanted=$( (cat tests/requirements.txt; echo "$cargo_lambda") | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "==> installing test tools into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r tests/requirements.txt
  "$venv/bin/python" -m pip install --quiet --no-deps "$cargo_lambda"
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
