"""Real footage: the hand-written labels of ../shared/data/real-clips, and `damo eval --videos` through the code
`damo ask` / `damo search` run, on a few dev clips. Skips where ../shared is absent (a user's clone)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "data" / "real-clips"
SHARED_CLIPS = ROOT.parent / "shared" / "data" / "real-clips"
needs_clips = pytest.mark.skipif(not (SHARED_CLIPS / "MANIFEST.tsv").is_file(), reason="../shared is absent")
# three dev clips with different content (a dog on a lawn, a parrot, a film scene)
FEW = ("grounded-sam-2__01_dog.mp4", "imageio-binaries__cockatoo.mp4", "video-llama__IronMan.mp4")


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (LABELS / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def damo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "damo_cli", *args], capture_output=True, text=True, timeout=900)


def eval_few(tmp_path: Path, few: list[dict], *options: str) -> subprocess.CompletedProcess[str]:
    """`damo eval --videos` on the shared clips with `few` as the ground truth, as JSON."""
    gt = tmp_path / "few.jsonl"
    gt.write_text("".join(json.dumps(r) + "\n" for r in few))
    clips = str(SHARED_CLIPS / "clips")
    return damo("eval", "--videos", clips, "--gt", str(gt), "--model", "damo-tiny", "--json", *options)


@needs_clips
def test_every_clip_is_labelled_once_with_its_manifest_sha256_and_split_by_repository():
    with open(SHARED_CLIPS / "MANIFEST.tsv", encoding="utf-8") as handle:
        manifest = {r["file"]: r for r in csv.DictReader(handle, delimiter="\t")}
    labels = rows("labels.jsonl")
    assert sorted(c["file"] for c in labels) == sorted(manifest)
    for clip in labels:
        length = float(manifest[clip["file"]]["seconds"])
        assert (1 if length < 3 else 2) <= len(clip["moments"]) <= 6, clip["file"]
        assert 2 <= len(clip["questions"]) <= 4, clip["file"]
        for m in clip["moments"]:
            assert 0 <= m["start"] < m["end"] <= length + 0.05 and m["description"].strip(), (clip["file"], m)
        for q in clip["questions"]:
            assert q["answer"].strip() and q["keywords"], (clip["file"], q)
    gt = {split: rows(f"moments-{split}.jsonl") + rows(f"questions-{split}.jsonl") for split in ("train", "dev")}
    for split, lines in gt.items():
        for line in lines:
            assert line["split"] == split and line["sha256"] == manifest[line["vid"]]["sha256"]
    repos = {split: {line["source_repo"] for line in lines} for split, lines in gt.items()}
    assert not repos["train"] & repos["dev"], "a source repository in both splits"
    dev_clips = {line["vid"] for line in gt["dev"]}
    assert len(dev_clips) >= len(manifest) / 4


@needs_clips
def test_eval_scores_the_moments_ask_returns_and_never_falls_below_the_bridge(tmp_path):
    few = [r for r in rows("moments-dev.jsonl") if r["vid"] in FEW]
    result = eval_few(tmp_path, few, "--no-llm", "--save-predictions", str(tmp_path / "pred"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    ask, bridge = report["ask"], report["bridge"]
    assert ask["counts"]["queries"] == ask["counts"]["scored"] == len(few)  # no question without a moment
    assert ask["mIoU"] >= bridge["mIoU"], (ask, bridge)
    # every question got at least one moment inside its clip
    predicted = [json.loads(line) for line in (tmp_path / "pred" / "predictions-ask.jsonl").read_text().splitlines()]
    durations = {r["qid"]: r["duration"] for r in few}
    for p in predicted:
        assert p["pred_relevant_windows"], p
        start, end, _ = p["pred_relevant_windows"][0]
        assert 0 <= start < end <= durations[p["qid"]] + 0.5, p
    # and `damo ask` itself returns the same top moment for one of those queries
    first = few[0]
    asked = damo("ask", str(SHARED_CLIPS / "clips" / first["vid"]), first["query"], "--json")
    assert asked.returncode == 0, asked.stderr
    moments = json.loads(asked.stdout)["moments"]
    mine = next(p for p in predicted if p["qid"] == first["qid"])
    assert moments and [moments[0]["start"], moments[0]["end"]] == mine["pred_relevant_windows"][0][:2]


@needs_clips
def test_eval_search_finds_the_right_clip_among_several(tmp_path):
    few = [r for r in rows("moments-dev.jsonl") if r["vid"] in FEW]
    result = eval_few(tmp_path, few, "--search")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["videos"] == 3 and report["queries"] == len(few)
    assert report["video_top1"] > 2 * report["chance_video_top1"], report


@needs_clips
def test_eval_answers_open_questions_in_words_reading_what_is_written(tmp_path):
    # two dev clips whose answers are written on screen ("SAM" in blocks, "children" on tracking boxes)
    clips = ("grounded-sam-2__03_blocks.mp4", "grounded-sam-2__children_tracking_demo.mp4")
    few = [q for q in rows("questions-dev.jsonl") if q["vid"] in clips]
    result = eval_few(tmp_path, few, "--answers", "--no-llm", "--save-predictions", str(tmp_path / "pred"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["questions"] == len(few) and report["time_range_only"]["ask"] == 0
    answers = {r["qid"]: r["answers"]["ask"] for r in map(json.loads, (tmp_path / "pred" / "answers.jsonl").open())}
    assert '"SAM"' in answers["grounded-sam-2__03_blocks#q1"]
    assert "children" in answers["grounded-sam-2__children_tracking_demo#q1"]
    assert report["keyword_match"]["ask"] > report["keyword_match"]["top class"]
