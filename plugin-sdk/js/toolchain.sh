#!/usr/bin/env bash
# Installs the pinned JavaScript plugin toolchain once and prints where it is.
#
#   plugin-sdk/js/toolchain.sh        # -> /root/.cache/eddy/toolchains/js-componentize-js-0.23.0-esbuild-0.28.2
#
# The toolchain is an npm project of its own, outside any clone, in
#   ${EDDY_TOOLCHAINS:-${XDG_CACHE_HOME:-$HOME/.cache}/eddy/toolchains}/js-<pinned versions>/
# with the package.json this script writes and the package-lock.json npm writes for it.
#
# Invariants:
# - stdout carries exactly one line, the toolchain's path; everything else goes to stderr,
#   and only when something is wrong.
# - The directory exists only when complete: npm installs into a temporary directory
#   beside it, which is renamed into place after the install checked out. A stamp file
#   (.eddy-toolchain) holding the package.json's text marks a finished install; a directory
#   without a matching stamp (an older script, an interrupted run) is installed again.
# - Two runs at once are safe: each installs into its own temporary directory and the
#   first rename wins.
#
# Pinned (see shared/TOOLCHAINS.md, JavaScript):
# - @bytecodealliance/componentize-js 0.23.0: turns one ES module into a component. It is
#   called directly, not through `jco componentize`.
# - esbuild 0.28.2: componentize-js reads a single file (it cannot resolve `eddy-plugin`
#   or files outside the app's directory), so build.sh bundles the app with the helper
#   library first.
# - @bytecodealliance/jco 1.35.0 and @bytecodealliance/preview2-shim 0.25.0 (overrides):
#   componentize-js uses jco internally; preview2-shim 0.26 no longer preopens `/`, which
#   breaks jco's file access ("failed to get path metadata").
# - @bytecodealliance/wizer 10.0.0 (override): the snapshotting step; pinned so a later
#   release cannot change what a build produces.
set -euo pipefail

COMPONENTIZE_JS=0.23.0
ESBUILD=0.28.2
JCO=1.35.0
PREVIEW2_SHIM=0.25.0
WIZER=10.0.0
# componentize-js's dependencies need Node 20; test.sh's module hooks (module.register)
# need 20.6.
NODE_MIN=20.6.0

die() {
    echo "eddy js toolchain: $*" >&2
    exit 1
}

command -v node >/dev/null 2>&1 ||
    die "node is not installed: install Node.js ${NODE_MIN} or newer (with npm), e.g. apt-get install nodejs npm"
command -v npm >/dev/null 2>&1 ||
    die "npm is not installed: install npm (it comes with Node.js ${NODE_MIN} or newer), e.g. apt-get install npm"
node_version=$(node -p 'process.versions.node')
# Compares dotted versions numerically: true when $1 >= $2.
version_at_least() {
    node -e '
        const [a, b] = process.argv.slice(1).map((v) => v.split(".").map(Number));
        for (let i = 0; i < 3; i++) if (a[i] !== b[i]) process.exit(a[i] > b[i] ? 0 : 1);
    ' "$1" "$2"
}
version_at_least "$node_version" "$NODE_MIN" ||
    die "node ${node_version} is too old: install Node.js ${NODE_MIN} or newer"

root=${EDDY_TOOLCHAINS:-${XDG_CACHE_HOME:-$HOME/.cache}/eddy/toolchains}
dir="$root/js-componentize-js-${COMPONENTIZE_JS}-esbuild-${ESBUILD}"
stamp=.eddy-toolchain

package_json=$(
    cat <<EOF
{
  "name": "eddy-js-toolchain",
  "private": true,
  "description": "Written by eddy's plugin-sdk/js/toolchain.sh; do not edit.",
  "dependencies": {
    "@bytecodealliance/componentize-js": "${COMPONENTIZE_JS}",
    "esbuild": "${ESBUILD}"
  },
  "overrides": {
    "@bytecodealliance/jco": "${JCO}",
    "@bytecodealliance/preview2-shim": "${PREVIEW2_SHIM}",
    "@bytecodealliance/wizer": "${WIZER}"
  }
}
EOF
)

if [[ -f "$dir/$stamp" && "$(cat "$dir/$stamp")" == "$package_json" ]]; then
    echo "$dir"
    exit 0
fi

mkdir -p "$root"
# Temporary directories of installs killed outright (no EXIT trap ran) are removed once
# they are an hour old, so that a concurrent install's is never touched.
find "$root" -maxdepth 1 -name '.js-install.*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true
tmp=$(mktemp -d "$root/.js-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # mktemp's 0700 would otherwise become the toolchain's
printf '%s\n' "$package_json" >"$tmp/package.json"
if ! (cd "$tmp" && npm install --no-audit --no-fund --loglevel=error >npm.log 2>&1); then
    tail -n 40 "$tmp/npm.log" >&2
    die "npm install failed (the log is above)"
fi
rm -f "$tmp/npm.log"
# The install is usable only if both tools start.
"$tmp/node_modules/.bin/esbuild" --version >/dev/null ||
    die "esbuild ${ESBUILD} was installed but does not run"
"$tmp/node_modules/.bin/componentize-js" --version >/dev/null ||
    die "componentize-js ${COMPONENTIZE_JS} was installed but does not run"
printf '%s' "$package_json" >"$tmp/$stamp"

# A directory without a matching stamp is an unfinished or outdated install: replace it.
if [[ -e "$dir" && ! (-f "$dir/$stamp" && "$(cat "$dir/$stamp")" == "$package_json") ]]; then
    rm -rf "$dir"
fi
# `mv -T` renames onto an absent or empty directory and fails on a full one: then another
# run finished first, and its install is as good as ours.
if ! mv -T "$tmp" "$dir" 2>/dev/null; then
    [[ -f "$dir/$stamp" ]] || die "could not move the install into $dir"
fi
echo "$dir"
