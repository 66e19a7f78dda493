"""Build the real-clip ground truth from the hand-written labels: `data/real-clips/labels.jsonl` (one clip per line:
file, summary, moments with start/end/description, open questions with answer and keywords) + the shared folder's
MANIFEST.tsv -> `data/real-clips/{moments,questions}-{train,dev}.jsonl` in the project's annotation schema.

The split is by source repository (SPLIT_DEV below), so no footage of a dev clip's origin is ever trained on.
Run from the checkout: `.venv/bin/python scripts/real_clip_labels.py [../shared/data/real-clips]`.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

# Dev repositories, chosen before any model was run on the clips, for variety (a film scene, animals, sports,
# cooking, household objects, people, a parrot, longer clips) and so that at least a quarter of the clips are dev.
SPLIT_DEV = (
    "DAMO-NLP-SG/Video-LLaMA",
    "IDEA-Research/Grounded-SAM-2",
    "OpenGVLab/Ask-Anything",
    "Zulko/moviepy",
    "RupertLuo/Valley",
    "imageio/imageio-binaries",
)
SPLITS = ("train", "dev")
ROOT = Path(__file__).resolve().parent.parent / "data" / "real-clips"


def main(shared: Path) -> None:
    with open(shared / "MANIFEST.tsv", encoding="utf-8") as handle:
        manifest = {row["file"]: row for row in csv.DictReader(handle, delimiter="\t")}
    labels = [json.loads(line) for line in (ROOT / "labels.jsonl").read_text().splitlines() if line.strip()]
    repos = {row["source_repo"] for row in manifest.values()}
    unknown = set(SPLIT_DEV) - repos
    if unknown:
        raise SystemExit(f"dev repositories not in the manifest: {sorted(unknown)}")
    out: dict[str, list[dict]] = {f"{kind}-{split}": [] for kind in ("moments", "questions") for split in SPLITS}
    for clip in sorted(labels, key=lambda c: c["file"]):
        row = manifest[clip["file"]]
        split = "dev" if row["source_repo"] in SPLIT_DEV else "train"
        common = {"vid": clip["file"], "sha256": row["sha256"], "split": split, "source_repo": row["source_repo"],
                  "duration": float(row["seconds"])}  # fmt: skip
        stem = Path(clip["file"]).stem
        for n, m in enumerate(clip["moments"], start=1):
            said = re.search(r"\b(?:say|says|said|saying|sings?|singing)\b", m["description"]) is not None
            out[f"moments-{split}"].append({
                "qid": f"{stem}#m{n}", **common, "query": m["description"],
                "relevant_windows": [[float(m["start"]), float(m["end"])]], "kind": "speech" if said else "visual",
            })  # fmt: skip
        for n, q in enumerate(clip["questions"], start=1):
            out[f"questions-{split}"].append({
                "qid": f"{stem}#q{n}", **common, "question": q["question"], "answer": q["answer"],
                "keywords": [k.lower() for k in q["keywords"]],
            })  # fmt: skip
    for name, rows in out.items():
        (ROOT / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(f"{name}: {len(rows)} rows, {len({r['vid'] for r in rows})} clips")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent.parent.parent / "shared" / "data" / "real-clips")
