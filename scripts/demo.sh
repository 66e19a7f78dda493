#!/usr/bin/env bash
# The README's main job on the example media: index them, search the library, ask a "when" and open questions.
# Idempotent: the demo's library and caches live in .damo-home/ in the checkout (git-ignored); a second run finds
# the videos unchanged and answers from cached features.
set -euo pipefail
cd "$(dirname "$0")/.."
export DAMO_HOME="${DAMO_HOME:-$PWD/.damo-home}"
DAMO=.venv/bin/damo
LIB="${DAMO_HOME#"$PWD"/}/demo-library"  # relative when it is inside the checkout: shorter to read
show() {  # echo the command as a user would type it, then run it
    printf '\n$ damo'
    for arg in "$@"; do if [[ "$arg" == *" "* ]]; then printf ' "%s"' "$arg"; else printf ' %s' "$arg"; fi; done
    printf '\n'
    "$DAMO" "$@"
}
show index examples --library "$LIB"
show search "ask what you can do for your country" --library "$LIB" -k 2
show search "quarterly results" --library "$LIB" -k 2
show search "music playing" --library "$LIB" -k 2
show ask examples/bunny_speech.mp4 "when does he say 'ask not what your country can do for you'?"
show ask examples/slides_music.mp4 "what does the screen say?"
show ask examples/slides_music.mp4 "when is music playing?"
show ask examples/bunny_speech.mp4 "what can you hear?"
