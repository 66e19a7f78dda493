"""Choose `pipeline.ask.HEAD_WEIGHT` (how much of the visual evidence comes from the trained head rather than the
zero-shot bridge) on the real clips' *train* split: `ask`'s moments for each weight, R1@0.5 and mIoU.

    .venv/bin/python scripts/choose_head_weight.py data/real-clips/moments-train.jsonl ../shared/data/real-clips/clips

Never run it on the dev split: dev is reported, not tuned on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from damo_cli.evaluation.grounding import temporal_iou
from damo_cli.evaluation.model_run import _videos_of
from damo_cli.evaluation.records import load_gt
from damo_cli.pipeline.analyse import Analyser
from damo_cli.pipeline.ask import find_moments, question_to_query
from damo_cli.pipeline.feature_cache import load_or_analyse
from damo_cli.pipeline.loading import load_model

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # with ask.py's other settings as they are


def main(gt_path: Path, videos: Path, model: str = "damo-tiny") -> None:
    if "dev" in gt_path.name:
        raise SystemExit("refusing to tune on the dev split")
    gt = load_gt(gt_path)
    analyser = Analyser(load_model(model), "cpu")
    ious: dict[float, list[float]] = {w: [] for w in WEIGHTS}
    for _vid, (path, queries) in _videos_of(gt, gt_path, videos).items():
        analysis, _ = load_or_analyse(analyser, path)
        lines = analysis.lines()  # said, written on screen, sound events: what `ask` scores beside the curve
        speech = analyser.text.encode([x.text for x in lines]) if lines else np.zeros((0, analyser.text.dim))
        for q in queries:
            query = question_to_query(q.query)
            vector = analyser.text.encode([query])[0]
            for w in WEIGHTS:
                moments = find_moments(analysis, query, vector, speech, analyser.model.trained, head_weight=w)
                top = np.asarray(moments[0][:2]) if moments else np.asarray([np.nan, np.nan])
                ious[w].append(float(temporal_iou(top[None], q.windows).max()))
    for w, values in ious.items():
        v = np.asarray(values)
        print(f"head_weight {w:.2f}: R1@0.5 {100 * (v >= 0.5).mean():5.1f}  mIoU {100 * v.mean():5.1f}  (n={len(v)})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), *(sys.argv[3:4]))
