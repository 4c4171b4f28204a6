#!/usr/bin/env bash
# Installs the pinned Python plugin toolchain once and prints where it is.
#
#   plugin-sdk/python/toolchain.sh    # -> ~/.cache/eddy/toolchains/python-componentize-py-0.25.1-pytest-9.2.0-py3.11
#
# The toolchain is a virtual environment of the machine's `python3`, outside any clone, in
#   ${EDDY_TOOLCHAINS:-${XDG_CACHE_HOME:-$HOME/.cache}/eddy/toolchains}/python-<pinned versions>-py<X.Y>/
# holding componentize-py (turns app.py into a component) and pytest (test.sh).
#
# Invariants:
# - stdout carries exactly one line, the toolchain's path; everything else goes to stderr,
#   and only when something is wrong.
# - A stamp file (.eddy-toolchain) holding the pinned requirements and the Python that made
#   the venv marks a finished install; the stamp is written last. A directory without a
#   matching stamp (an interrupted run, an older script, another python3) is removed and
#   installed again.
# - The venv is built at its final path, not in a temporary directory renamed into place:
#   a venv is not relocatable (pip writes its own path into the scripts it installs).
#   Runs are serialised by a lock file instead (flock), so two at once are safe: the
#   second waits and then finds the first one's stamp.
#
# Pinned (see shared/TOOLCHAINS.md, Python):
# - componentize-py 0.25.1: the version every world of wit/eddy.wit was checked with. It
#   ships its own CPython for Wasm (3.14); the machine's python3 only runs pip and pytest.
# - pytest 9.2.0 (its own dependencies are resolved by pip).
set -euo pipefail

COMPONENTIZE_PY=0.25.1
PYTEST=9.2.0
# The oldest Python the tests run on (tomllib); the library itself needs 3.10.
PYTHON_MIN=3.11

die() {
    echo "eddy python toolchain: $*" >&2
    exit 1
}

command -v python3 >/dev/null 2>&1 ||
    die "python3 is not installed: install Python ${PYTHON_MIN} or newer (Debian/Ubuntu: apt-get install python3 python3-venv)"
# One interpreter start for every question: its version, whether it is new enough, whether
# it can make a venv (Debian splits ensurepip into python3-venv), and where it really is.
facts=$(python3 - "$PYTHON_MIN" <<'EOF'
import os, sys
try:
    import ensurepip, venv
    has_venv = 1
except ImportError:
    has_venv = 0
minimum = tuple(map(int, sys.argv[1].split(".")))
print("%d.%d" % sys.version_info[:2], int(sys.version_info >= minimum), has_venv, os.path.realpath(sys.executable))
EOF
) || die "python3 ($(command -v python3)) does not run"
read -r py_version py_new_enough py_has_venv py_path <<<"$facts"
[[ "$py_new_enough" == 1 ]] || die "python3 is ${py_version}, too old: install Python ${PYTHON_MIN} or newer"
[[ "$py_has_venv" == 1 ]] ||
    die "python3 has no working venv module: install it (Debian/Ubuntu: apt-get install python3-venv)"
command -v flock >/dev/null 2>&1 || die "flock is not installed: install util-linux"

root=${EDDY_TOOLCHAINS:-${XDG_CACHE_HOME:-$HOME/.cache}/eddy/toolchains}
dir="$root/python-componentize-py-${COMPONENTIZE_PY}-pytest-${PYTEST}-py${py_version}"
stamp=.eddy-toolchain

requirements="componentize-py==${COMPONENTIZE_PY}
pytest==${PYTEST}"
# What a finished install records: the requirements and the interpreter behind the venv.
expected_stamp="$requirements
python $py_path"

finished() {
    [[ -f "$dir/$stamp" && "$(cat "$dir/$stamp")" == "$expected_stamp" ]]
}

if finished; then
    echo "$dir"
    exit 0
fi

mkdir -p "$root"
exec 9>"$root/.python.lock"
flock 9
# Another run may have finished while this one waited for the lock.
if finished; then
    echo "$dir"
    exit 0
fi

rm -rf "$dir"
python3 -m venv "$dir" >&2 || die "python3 -m venv $dir failed"
log="$dir/.install.log"
if ! "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-input \
    "componentize-py==${COMPONENTIZE_PY}" "pytest==${PYTEST}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "pip install failed (the log is above); the next run starts over"
fi
rm -f "$log"
# The install is usable only if both tools start.
"$dir/bin/componentize-py" --version >/dev/null ||
    die "componentize-py ${COMPONENTIZE_PY} was installed but does not run"
"$dir/bin/python" -m pytest --version >/dev/null 2>&1 ||
    die "pytest ${PYTEST} was installed but does not run"
printf '%s' "$expected_stamp" >"$dir/$stamp"
echo "$dir"
