"""Frozen pretrained backbones (DESIGN.md §3), one small interface each.

- `visual.VisualEncoder`: frames -> global vector + local map per frame, and ImageNet class probabilities.
- `audio.AudioEncoder`: 16 kHz audio -> Whisper encoder states per 30 s window.
- `transcribe.Transcriber`: timestamped transcript (faster-whisper with VAD, so silence yields no text).
- `text.TextEncoder`: sentences -> unit-norm 384-d vectors (MiniLM).
- `llm.load_llm`: the causal LM + tokenizer in transformers (accepts `inputs_embeds`).

Weights are resolved from installed packages and sha256-verified by `weights`; derived files are built in the
cache atomically. Heavy libraries are imported inside functions so `damo --help` stays fast.
"""
