#!/usr/bin/env bash
# Builds a Python plugin into an Eddy component.
#
#   plugin-sdk/python/build.sh APP_DIR WORLD OUT.wasm
#   plugin-sdk/python/build.sh example-plugins/python/filter filter-plugin target/plugins/filter-py.wasm
#
# componentize-py (from toolchain.sh) imports module `app` (APP_DIR/app.py) with APP_DIR
# and the helper library (`import eddy_plugin`, beside this script) on its path, and turns
# it into a component of world WORLD (filter-plugin, transform-plugin, …) of the WIT
# contract in $EDDY_WIT_DIR, by default the `wit/` of the repository this script is in (a
# project outside the repository ships its own copy and sets EDDY_WIT_DIR).
#
# Invariants:
# - app.py's top level runs now, at build time, inside componentize-py's interpreter; the
#   component starts from a snapshot taken after it. Host calls are not possible then.
# - No --stub-wasi: the component imports WASI preview 2, which the host links, so print()
#   and uncaught exceptions reach the plugin's stdout/stderr, which the host passes on to
#   its log. (With stubs, the first print() would trap.)
# - componentize-py reads copies: APP_DIR without its tests (test_*.py, *_test.py,
#   conftest.py), fixtures/, caches and .wasm files, and eddy_plugin/ alone. It would
#   otherwise write __pycache__ directories into the source tree.
# - OUT.wasm is replaced by rename, never written in place, so a host watching it never
#   loads half a file; a failed build leaves it as it was.
set -euo pipefail

die() {
    echo "build.sh: $*" >&2
    exit 1
}

[[ $# -eq 3 ]] || die "usage: build.sh APP_DIR WORLD OUT.wasm"
app_dir=$1
world=$2
out=$3
[[ -f "$app_dir/app.py" ]] || die "no $app_dir/app.py"

sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
wit=${EDDY_WIT_DIR:-$sdk/../../wit}
[[ -d "$wit" ]] || die "no WIT directory at $wit (set EDDY_WIT_DIR)"
wit=$(cd "$wit" && pwd)
app=$(cd "$app_dir" && pwd)

toolchain=$("$sdk/toolchain.sh")

work=$(mktemp -d "${TMPDIR:-/tmp}/eddy-py-build.XXXXXX")
out_dir=$(dirname "$out")
mkdir -p "$out_dir"
partial="$out_dir/.$(basename "$out").partial.$$"
trap 'rm -rf "$work" "$partial"' EXIT

started=$(date +%s%N)

# What goes into the component: the app without its tests, and the library.
mkdir -p "$work/app" "$work/lib"
tar -C "$app" -cf - --exclude='test_*.py' --exclude='*_test.py' --exclude=conftest.py \
    --exclude=fixtures --exclude=__pycache__ --exclude=.pytest_cache --exclude='*.wasm' . |
    tar -C "$work/app" -xf -
cp -R "$sdk/eddy_plugin" "$work/lib/"
rm -rf "$work/lib/eddy_plugin/__pycache__"

# componentize-py adds $VIRTUAL_ENV's site-packages to the app's path: unset, so the
# toolchain's own packages (pytest, …) stay out of the component. Its Rust backtraces say
# nothing to a plugin author: off. Its output goes to stderr here.
(cd "$work" && env -u VIRTUAL_ENV RUST_BACKTRACE=0 "$toolchain/bin/componentize-py" -d "$wit" -w "$world" \
    componentize -p "$work/app" -p "$work/lib" app -o "$work/component.wasm" >&2) ||
    die "componentize-py could not build $app_dir/app.py as world \`$world\` of $wit (a Filter builds as filter-plugin, a Transform as transform-plugin: is that the world it exports?)"
[[ -s "$work/component.wasm" ]] || die "componentize-py wrote no component"

mv "$work/component.wasm" "$partial"
mv -f "$partial" "$out"

awk -v out="$out" -v world="$world" -v size="$(stat -c %s "$out")" \
    -v ns="$(($(date +%s%N) - started))" \
    'BEGIN { printf "build.sh: %s (%s, %.1f MB) in %.1f s\n", out, world, size / 1e6, ns / 1e9 }' >&2
