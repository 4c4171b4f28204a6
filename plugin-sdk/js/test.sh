#!/usr/bin/env bash
# Runs a JavaScript plugin's tests under Node, against the mock host; no Wasm involved.
#
#   plugin-sdk/js/test.sh APP_DIR [node test-runner options...]
#   plugin-sdk/js/test.sh example-plugins/js/filter --test-name-pattern=text
#
# Runs `node --test` on every *.test.js under APP_DIR (node_modules aside). Module hooks
# make the imports resolve as in a build:
#   "eddy-plugin"             -> plugin-sdk/js/eddy-plugin.js (the helper library)
#   "eddy-plugin/testing"     -> plugin-sdk/js/testing.js (the mock host)
#   "eddy:plugin/host@0.2.0"  -> plugin-sdk/js/testing.js (the WIT import, served by the mock)
# and load the app's .js files as ES modules even without a package.json saying so
# (build.sh bundles them as ES modules too). Needs Node 20.6 or newer (module.register).
set -euo pipefail

die() {
    echo "test.sh: $*" >&2
    exit 1
}

[[ $# -ge 1 ]] || die "usage: test.sh APP_DIR [node test-runner options...]"
app_dir=$1
shift
[[ -d "$app_dir" ]] || die "no such directory: $app_dir"
command -v node >/dev/null 2>&1 || die "node is not installed: install Node.js 20.6 or newer"
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 6) ? 0 : 1)' ||
    die "node $(node --version) is too old: install Node.js 20.6 or newer"

sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
app=$(cd "$app_dir" && pwd)

mapfile -t tests < <(find "$app" -name node_modules -prune -o -name '*.test.js' -type f -print | sort)
[[ ${#tests[@]} -gt 0 ]] || die "no *.test.js files under $app_dir"

# The resolve hook, registered before any test file loads (node --import). It runs on
# node's loader thread and gets the mapping through `initialize`.
hooks='
let map, esmRoots;
export function initialize(data) { map = data.map; esmRoots = data.esmRoots; }
export async function resolve(specifier, context, next) {
  if (Object.hasOwn(map, specifier)) return { url: map[specifier], format: "module", shortCircuit: true };
  const resolved = await next(specifier, context);
  const url = resolved.url;
  if (url.endsWith(".js") && !url.includes("/node_modules/") && esmRoots.some((root) => url.startsWith(root))) {
    return { ...resolved, format: "module" };
  }
  return resolved;
}'
register='
import { register } from "node:module";
import { pathToFileURL } from "node:url";
const [sdk, app, hooks] = [process.env.EDDY_JS_SDK, process.env.EDDY_JS_APP, process.env.EDDY_JS_HOOKS];
const url = (file) => pathToFileURL(file).href;
register("data:text/javascript," + encodeURIComponent(hooks), {
  data: {
    map: {
      "eddy-plugin": url(sdk + "/eddy-plugin.js"),
      "eddy-plugin/testing": url(sdk + "/testing.js"),
      "eddy:plugin/host@0.2.0": url(sdk + "/testing.js"),
    },
    esmRoots: [url(sdk) + "/", url(app) + "/"],
  },
});'

export EDDY_JS_SDK="$sdk" EDDY_JS_APP="$app" EDDY_JS_HOOKS="$hooks"
exec node --import "data:text/javascript,$(node -p 'encodeURIComponent(process.argv[1])' "$register")" \
    --test "$@" "${tests[@]}"
