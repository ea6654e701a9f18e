# shellcheck shell=bash
# Helpers shared by scripts/test.sh, scripts/serve.sh and benches/daemon.sh. Source it; don't run it.
#
# None of these variables starts with SLUICE_: the daemon reads every SLUICE_* environment
# variable as configuration and rejects unknown keys.
#
# Everything here is idempotent: on a machine that already has what is needed, nothing is
# installed and nothing is printed apart from section headers.

# The repository root, whatever the caller's working directory.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Where cargo puts binaries (honours CARGO_TARGET_DIR like cargo does). Used by the callers.
# shellcheck disable=SC2034
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
# The Python virtual environment used by the end-to-end tests.
VENV_DIR="$REPO_ROOT/.venv"

# Python packages the end-to-end tests import (pinned there, so every machine runs the same ones).
PY_REQUIREMENTS="$REPO_ROOT/tests/e2e/requirements.txt"

_section_started=""
_section_index=0

# section "title": print a header and remember when it started, so `section_done` can time it.
section() {
    _section_index=$((_section_index + 1))
    _section_started=$SECONDS
    printf '\n==> [%d] %s\n' "$_section_index" "$1"
}

# section_done: print how long the current section took.
section_done() {
    printf '==> ok (%ds)\n' "$((SECONDS - _section_started))"
}

note() { printf '    %s\n' "$*"; }

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# run_as_root CMD...: run a command as root (directly, or through passwordless sudo).
run_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

# apt_ensure PKG...: install the Debian packages that are missing (after `apt-get update`).
# Does nothing, and needs no root, when every package is already installed.
apt_ensure() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$pkg")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "missing packages ${missing[*]} and no apt-get to install them; install them by hand"
    note "installing Debian packages: ${missing[*]}"
    run_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null ||
        die "missing Debian packages ${missing[*]}; run as root: apt-get update && apt-get install -y ${missing[*]}"
    run_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
}

# python_ensure_venv: create .venv/ (once) and install tests/e2e/requirements.txt into it
# (again only when that file or the interpreter changed). Prints the venv's python path.
python_ensure_venv() {
    local python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 || die "$python not found; install Python 3.11 or newer"
    # Debian's own python3 needs python3-venv for `-m venv` (pyenv and upstream builds have it).
    if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_ensure python3-venv
    fi
    if [ -x "$VENV_DIR/bin/python" ] && ! "$VENV_DIR/bin/python" -c 'import sys' >/dev/null 2>&1; then
        note "recreating a broken $VENV_DIR"
        rm -rf "$VENV_DIR"
    fi
    if [ ! -x "$VENV_DIR/bin/python" ]; then
        note "creating $VENV_DIR"
        "$python" -m venv "$VENV_DIR" >/dev/null || die "python -m venv $VENV_DIR failed"
    fi
    local stamp="$VENV_DIR/.sluice-requirements"
    local want
    want="$("$VENV_DIR/bin/python" --version 2>&1) $(sha256sum "$PY_REQUIREMENTS" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        note "installing Python test dependencies into $VENV_DIR"
        "$VENV_DIR/bin/python" -m pip install -q --disable-pip-version-check \
            -r "$PY_REQUIREMENTS" || die "pip install -r $PY_REQUIREMENTS failed"
        printf '%s' "$want" >"$stamp"
    fi
}

# node_ensure_modules DIR: `npm ci` in DIR (a package.json + package-lock.json) when its
# node_modules/ is missing or older than the lock file; afterwards exactly the locked versions.
node_ensure_modules() {
    local dir="$1"
    local stamp="$dir/node_modules/.sluice-lock"
    local want
    want="$(node --version) $(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        note "installing Node test dependencies into $dir/node_modules (npm ci)"
        (cd "$dir" && npm ci --silent --no-audit --no-fund >/dev/null) || die "npm ci in $dir failed"
        printf '%s' "$want" >"$stamp"
    fi
}

# free_port: print a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
