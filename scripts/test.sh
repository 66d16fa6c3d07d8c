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

# tests/prune_export.rs checks the exported masks the way a PyTorch user would, with
# tests/python/check_masks.py (numpy + safetensors only); it fails rather than skips without them.
if ! python3 -c 'import numpy, safetensors' 2>/dev/null; then
    python3 -m pip install --quiet numpy safetensors
fi
export PRUNEVIEW_PYTHON=python3

cargo test "$@"
