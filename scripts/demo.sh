#!/usr/bin/env bash
# The README's main command: check the machine, then look inside the example video and transcribe it.
set -euo pipefail
cd "$(dirname "$0")/.."
DAMO=.venv/bin/damo
EXAMPLE=examples/bunny_speech.mp4
$DAMO doctor
$DAMO probe "$EXAMPLE"
$DAMO transcribe "$EXAMPLE"
