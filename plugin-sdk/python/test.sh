#!/usr/bin/env bash
# Runs a Python plugin's tests with pytest, against the mock host; no Wasm involved.
#
#   plugin-sdk/python/test.sh APP_DIR [pytest options...]
#   plugin-sdk/python/test.sh example-plugins/python/filter -k text
#
# Runs pytest (from the toolchain, toolchain.sh) on APP_DIR with the helper library
# (`import eddy_plugin`, `from eddy_plugin.testing import MockHost`) importable, and APP_DIR
# itself, so the tests `from app import ...`. The tests run under the machine's CPython,
# not in a component: app.py must not import the generated bindings (`wit_world`), which
# exist only while build.sh builds it.
#
# Invariants:
# - Nothing is written into APP_DIR: no .pytest_cache, no __pycache__.
# - pytest's exit code is the script's (5 when APP_DIR holds no test).
set -euo pipefail

die() {
    echo "test.sh: $*" >&2
    exit 1
}

[[ $# -ge 1 ]] || die "usage: test.sh APP_DIR [pytest options...]"
app_dir=$1
shift
[[ -d "$app_dir" ]] || die "no such directory: $app_dir"

sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
app=$(cd "$app_dir" && pwd)
toolchain=$("$sdk/toolchain.sh")

export PYTHONPATH="$sdk:$app${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
exec "$toolchain/bin/python" -m pytest -p no:cacheprovider --rootdir "$app" "$@" "$app"
