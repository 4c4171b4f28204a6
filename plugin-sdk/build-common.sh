# What plugin-sdk/js/build.sh and plugin-sdk/python/build.sh share; sourced by them, after
# they set `sdk` to their own directory (each language directory links this file).
#
#   build_setup APP_FILE "$@"   checks `APP_DIR WORLD OUT.wasm` (APP_DIR/APP_FILE must
#                               exist) and sets app_dir, world, out, app, wit, work, partial
#   publish_component TOOL      moves $work/component.wasm to OUT and reports it
#
# Invariants:
# - OUT.wasm is replaced by rename, never written in place, so a host watching it never
#   loads half a file; a failed build leaves it as it was.
# - The work directory and a partial output are removed however the build ends.

die() {
    echo "build.sh: $*" >&2
    exit 1
}

build_setup() {
    local app_file=$1
    shift
    [[ $# -eq 3 ]] || die "usage: build.sh APP_DIR WORLD OUT.wasm"
    app_dir=$1
    world=$2
    out=$3
    [[ -f "$app_dir/$app_file" ]] || die "no $app_dir/$app_file"
    wit=${EDDY_WIT_DIR:-$sdk/../../wit}
    [[ -d "$wit" ]] || die "no WIT directory at $wit (set EDDY_WIT_DIR)"
    wit=$(cd "$wit" && pwd)
    app=$(cd "$app_dir" && pwd)
    work=$(mktemp -d "${TMPDIR:-/tmp}/eddy-build.XXXXXX")
    local out_dir
    out_dir=$(dirname "$out")
    mkdir -p "$out_dir"
    partial="$out_dir/.$(basename "$out").partial.$$"
    trap 'rm -rf "$work" "$partial"' EXIT
    # Microseconds since the epoch, without bc (not on every machine).
    build_started=${EPOCHREALTIME//[!0-9]/}
}

publish_component() {
    [[ -s "$work/component.wasm" ]] || die "$1 wrote no component"
    mv "$work/component.wasm" "$partial"
    mv -f "$partial" "$out"
    local tenths_s tenths_mb
    tenths_s=$(((${EPOCHREALTIME//[!0-9]/} - build_started) / 100000))
    tenths_mb=$(($(stat -c %s "$out") / 100000))
    printf 'build.sh: %s (%s, %d.%d MB) in %d.%d s\n' "$out" "$world" $((tenths_mb / 10)) \
        $((tenths_mb % 10)) $((tenths_s / 10)) $((tenths_s % 10)) >&2
}
