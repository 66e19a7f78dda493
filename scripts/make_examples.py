"""Rebuild examples/slides_music.mp4: 30 s; "QUARTERLY RESULTS 2026" on screen at 5-8 s, music at 10-20 s."""

from pathlib import Path

from damo_cli.data.examples import slide_video

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "examples" / "slides_music.mp4"
    slide_video(out)
    print(out)
