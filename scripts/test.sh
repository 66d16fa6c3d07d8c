#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh Debian machine, then
# runs the whole test suite. Safe to run again (installs are skipped when present).
set -euo pipefail
cd "$(dirname "$0")/.."

# The golden tests read OpenPCDet reference outputs and real scans from ../shared.
if [ ! -d ../shared/reference ] || [ ! -d ../shared/data ]; then
    echo "error: ../shared/reference and ../shared/data are missing (they hold the OpenPCDet golden outputs and the real scans the tests use)" >&2
    exit 1
fi

# tests/it/prune_export.rs checks the exported masks the way a PyTorch user would, with
# tests/python/check_masks.py (numpy + safetensors only); it fails rather than skips without them.
if ! python3 -c 'import numpy, safetensors' 2>/dev/null; then
    python3 -m pip install --quiet numpy safetensors
fi
export PRUNEVIEW_PYTHON=python3

# The app's UI tests render headlessly on Mesa's software Vulkan (lavapipe): no display and
# no GPU needed. Pinning it keeps the snapshots the same on every machine.
if [ ! -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        mesa-vulkan-drivers libvulkan1 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 >/dev/null
fi
export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
# wgpu's adapter probe asks Wayland for this folder and complains when a CI shell lacks it.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/pruneview-xdg-$(id -u)"
    mkdir -p -m 700 "$XDG_RUNTIME_DIR"
fi

# A one-shot test run gains nothing from incremental caches; on a clean build they add gigabytes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

cargo test "$@"
