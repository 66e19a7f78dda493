"""What a score was measured under, printed with every report so two numbers can be compared honestly.

The protocols themselves: docs/architecture.md §6.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from damo_cli.evaluation.records import file_digest

NA = "n/a"


@dataclass(frozen=True)
class Protocol:
    """The evaluation protocol of one report.

    `split` names the GT file and pins its content (sha256 prefix). The last four fields describe how predictions were
    produced and are given by the caller; they are None when scoring a predictions file made elsewhere (except
    `parser`, set when free-text answers were parsed).
    """

    dataset: str
    split: str
    iou_rule: str
    r1_thresholds: tuple[float, ...]
    frame_sampling: str | None = None
    prompt_hash: str | None = None
    parser: str | None = None
    model_fingerprint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["r1_thresholds"] = list(self.r1_thresholds)
        return out

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs for display, with "n/a" for fields the caller did not give."""
        return [
            ("dataset", self.dataset),
            ("split", self.split),
            ("IoU rule", self.iou_rule),
            ("R1 thresholds", ", ".join(f"{m:g}" for m in self.r1_thresholds)),
            ("frame sampling", self.frame_sampling or NA),
            ("prompt hash", self.prompt_hash or NA),
            ("parser", self.parser or NA),
            ("model", self.model_fingerprint or NA),
        ]


def split_id(gt_path: Path, digest_chars: int = 12) -> str:
    """`<file name>@sha256:<prefix>`: the split's name plus enough of its hash to tell edited copies apart."""
    return f"{gt_path.name}@sha256:{file_digest(gt_path)[:digest_chars]}"
