#!/usr/bin/env bash
# Builds a JavaScript plugin into an Eddy component.
#
#   plugin-sdk/js/build.sh APP_DIR WORLD OUT.wasm
#   plugin-sdk/js/build.sh example-plugins/js/filter filter-plugin target/plugins/filter-js.wasm
#
# APP_DIR/app.js is bundled with the helper library (`import … from "eddy-plugin"`) and
# any packages under APP_DIR/node_modules into one ES module (esbuild), which
# componentize-js turns into a component of world WORLD (filter-plugin, transform-plugin,
# …) of the WIT contract in $EDDY_WIT_DIR, by default the `wit/` of the repository this
# script is in (a project outside the repository ships its own copy and sets EDDY_WIT_DIR).
#
# Invariants:
# - The component imports only what the host links: eddy:plugin/host and WASI preview 2
#   (cli, clocks, io, random; no wasi:http, whence `--disable http fetch-event`). stdio
#   stays on, so console.log/console.error and uncaught exceptions reach the plugin's
#   stdout/stderr, which the host passes on.
# - OUT.wasm is replaced by rename (build-common.sh), never written in place.
# - The toolchain comes from toolchain.sh (pinned versions, installed once).
set -euo pipefail

sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../build-common.sh
source "$sdk/build-common.sh"
build_setup app.js "$@"

toolchain=$("$sdk/toolchain.sh")
bin="$toolchain/node_modules/.bin"

# One ES module: the app, the library and the app's packages. The WIT import stays an
# import (componentize-js provides it); `eddy-plugin` is the library beside this script.
# The bundle is named app.js, so an uncaught exception's stack names app.js (with the
# bundle's line numbers: EDDY_JS_KEEP_BUNDLE=DIR keeps a copy to read them in).
"$bin/esbuild" "$app/app.js" --bundle --format=esm --platform=neutral \
    --main-fields=module,main --alias:eddy-plugin="$sdk/eddy-plugin.js" \
    '--external:eddy:*' --log-level=warning --outfile="$work/app.js" ||
    die "bundling $app_dir/app.js failed"
if [[ -n "${EDDY_JS_KEEP_BUNDLE:-}" ]]; then
    mkdir -p "$EDDY_JS_KEEP_BUNDLE"
    cp "$work/app.js" "$EDDY_JS_KEEP_BUNDLE/app.js"
fi

# componentize-js evaluates the module (its top level runs now, at build time) and
# snapshots the engine. It maps the current directory into its sandbox, so run it from
# the work directory. Its stdout (the app's top-level console.log) goes to stderr here.
(cd "$work" && "$bin/componentize-js" app.js --wit "$wit" --world-name "$world" \
    --disable http fetch-event --out component.wasm >&2) ||
    die "componentize-js could not build $app_dir/app.js as world \`$world\` of $wit (a Filter builds as filter-plugin, a Transform as transform-plugin: is that the world it exports?)"
publish_component componentize-js
