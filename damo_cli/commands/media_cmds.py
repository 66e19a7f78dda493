"""`damo probe` and `damo transcribe`: what is in a media file, and what is said in it."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from damo_cli.commands.inputs import local_path


def probe(
    path: Path = typer.Argument(..., help="Video or audio file."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show a media file's duration, streams, frame rate, size, rotation and audio (or 'no audio')."""
    from damo_cli.media import probe as probe_media

    info = probe_media(local_path(path))
    fields = asdict(info)
    fields["path"] = str(info.path)
    if json_output:
        typer.echo(json.dumps(fields, indent=2))
        return
    table = Table(title=str(info.path), show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("duration", f"{info.duration:.3f} s")
    table.add_row("container", info.container)
    if info.has_video:
        vfr = " (variable)" if info.variable_frame_rate else ""
        table.add_row("video", f"{info.video_codec}, {info.width}x{info.height}, {info.fps:.3f} fps{vfr}")
        table.add_row("frames", str(info.num_frames) if info.num_frames is not None else "unknown")
        table.add_row("rotation", f"{info.rotation}°")
    else:
        table.add_row("video", "no video")
    if info.has_audio:
        table.add_row("audio", f"{info.audio_codec}, {info.audio_sample_rate} Hz, {info.audio_channels} ch")
    else:
        table.add_row("audio", "no audio")
    Console().print(table)


def transcribe(
    path: Path = typer.Argument(..., help="Video or audio file."),
    output_format: str = typer.Option("text", "--format", "-f", help="text, srt or jsonl."),
    language: str = typer.Option(None, "--language", help="Spoken language code (e.g. en); detected if omitted."),
    model: str = typer.Option("damo-tiny", "--model", help="Model card whose audio backbone transcribes."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, mps or auto."),
    beam_size: int = typer.Option(1, "--beam-size", min=1, max=10, help="1 = greedy (fast); 5 = beam search."),
) -> None:
    """Print a timestamped transcript (Whisper with voice-activity detection: silence gives no text)."""
    from damo_cli.cards import load_card
    from damo_cli.device import resolve_device
    from damo_cli.encoders.loader import load_backbone
    from damo_cli.errors import DamoError
    from damo_cli.media import load_audio
    from damo_cli.writers import TRANSCRIPT_WRITERS

    local_path(path)
    if output_format not in TRANSCRIPT_WRITERS:
        raise DamoError(f"unknown format '{output_format}': use one of {', '.join(TRANSCRIPT_WRITERS)}")
    samples = load_audio(path)
    if samples is None:
        typer.echo(f"{path}: no audio", err=True)
        return
    whisper = load_backbone(load_card(model), "audio", resolve_device(device))
    with Console(stderr=True).status("transcribing"):
        segments = whisper.transcribe(samples, language=language, beam_size=beam_size)
    if not segments:
        typer.echo(f"{path}: no speech found", err=True)
        return
    TRANSCRIPT_WRITERS[output_format]().write(segments, sys.stdout)
