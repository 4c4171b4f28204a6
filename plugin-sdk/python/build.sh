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
# - OUT.wasm is replaced by rename (build-common.sh), never written in place.
set -euo pipefail

sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../build-common.sh
source "$sdk/build-common.sh"
build_setup app.py "$@"

toolchain=$("$sdk/toolchain.sh")

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
publish_component componentize-py
