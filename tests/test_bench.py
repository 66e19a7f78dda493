"""`damo bench`: the JSON's shape, ratios computed from values of the same run, and a naive baseline that samples the
very frames damo samples. No timed assertions: speed targets never live in unit tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from damo_cli.bench.indexing import DecodeEverything
from damo_cli.bench.report import Figure
from damo_cli.bench.run import STAGES
from damo_cli.bench.scaling import ray_available
from damo_cli.commands.bench_cmd import bench
from damo_cli.media import FrameReader, sample_frames

EXPECTED_FIGURES = {
    "index_rtf_vs_naive",
    "index_rtf_vs_decode_floor",
    "index_rtf_vs_no_named_evidence",
    "ask_warm_in_process",
    "ask_cold_cli",
    "ask_warm_cli",
    "ask_open_question_warm",
    "index_peak_rss",
    "index_cli_rtf_long",
    "serve_ask_cli_p50",
    "serve_search_cli_p50",
} | {f"search_{kind}_{size}" for kind in ("p50", "p95", "recall10") for size in ("2k", "6k")}
if ray_available():  # the Ray figure needs the optional extra; without it the bench says so and leaves it out
    EXPECTED_FIGURES |= {"index_rtf_ray_2_workers"}


def test_figure_ratio_is_value_over_baseline() -> None:
    fig = Figure("k", "label", 3.0, "s", "base", 1.5, "lower")
    assert fig.ratio == 2.0 and fig.to_json()["ratio"] == 2.0
    assert Figure("k", "label", 3.0, "s", "base", None, "lower").ratio is None
    assert Figure("k", "label", 3.0, "s", "base", 0.0, "lower").ratio is None


def test_naive_frame_source_serves_the_frames_damo_samples(make_coded_video, frame_code) -> None:
    video = make_coded_video("bench_naive.mp4", 100, fps=25)  # 4 s
    naive = DecodeEverything()
    with naive(video, size=(160, 96)) as served_reader, FrameReader(video, size=(160, 96)) as damo_reader:
        for start, end in ((0.0, 2.5), (2.0, 4.0), (1.0, 3.0)):  # overlapping windows, in any order
            damo = damo_reader.sample(fps=2, start=start, end=end)
            served = served_reader.sample(fps=2, start=start, end=end)
            assert [frame_code(f) for f in served.frames] == [frame_code(f) for f in damo.frames]
            np.testing.assert_allclose(served.timestamps, damo.timestamps, atol=1e-3)
            once = sample_frames(video, fps=2, start=start, end=end, size=(160, 96))  # a reader per window
            assert [frame_code(f) for f in once.frames] == [frame_code(f) for f in damo.frames]
    assert naive.decoded == 100  # it paid for every frame, which is the point of the baseline


@pytest.mark.slow
def test_quick_bench_json(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(bench)
    result = CliRunner().invoke(app, ["--quick", "--json", "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout)  # stdout is exactly one JSON object; progress goes to stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("bench: ")]
    assert len(progress) == STAGES and progress[0].endswith(f"(1/{STAGES})"), result.stderr
    assert any(line.startswith("bench: index throughput") and f"(4/{STAGES})" in line for line in progress)

    assert set(report) == {"figures", "machine", "config", "elapsed_s", "stage_s"}
    assert len(report["stage_s"]) == STAGES
    machine = report["machine"]
    for key in ("cpu_model", "cores", "ram_gb", "torch_threads", "python", "torch", "faiss", "device"):
        assert machine[key] not in (None, ""), key
    assert report["config"]["quick"] is True

    figures = {f["key"]: f for f in report["figures"]}
    assert set(figures) == EXPECTED_FIGURES
    for fig in figures.values():
        assert set(fig) >= {"label", "value", "unit", "baseline_label", "baseline", "ratio", "better", "detail"}
        assert fig["better"] in ("higher", "lower")
        assert math.isfinite(fig["value"]) and fig["value"] >= 0, fig
        assert math.isfinite(fig["baseline"]) and fig["baseline"] > 0, fig
        assert fig["ratio"] == pytest.approx(fig["value"] / fig["baseline"], rel=1e-9), fig

    # Values shared between figures are the same measurement, not re-typed numbers.
    naive, floor = figures["index_rtf_vs_naive"], figures["index_rtf_vs_decode_floor"]
    assert naive["value"] == floor["value"] == figures["index_rtf_vs_no_named_evidence"]["value"]
    detail = naive["detail"]
    assert naive["value"] == pytest.approx(detail["duration_s"] / detail["damo_s"], rel=0.02)
    assert naive["baseline"] == pytest.approx(detail["duration_s"] / detail["naive_s"], rel=0.02)
    assert floor["baseline"] == pytest.approx(detail["duration_s"] / detail["decode_only_s"], rel=0.02)
    assert detail["frames_decoded_by_naive"] > detail["frames_sampled"]  # every frame vs one per sampling step
    assert figures["ask_warm_in_process"]["baseline"] == figures["ask_cold_cli"]["baseline"]  # cold, in-process
    assert figures["ask_warm_cli"]["baseline"] == figures["ask_cold_cli"]["value"]
    assert figures["ask_open_question_warm"]["baseline"] == figures["ask_warm_in_process"]["value"]
    assert figures["index_peak_rss"]["detail"]["long_wall_s"] == figures["index_cli_rtf_long"]["detail"]["long_wall_s"]
    for size in ("2k", "6k"):
        recall = figures[f"search_recall10_{size}"]
        assert 0.0 <= recall["value"] <= 1.0 and recall["baseline"] == 1.0
    if "index_rtf_ray_2_workers" in figures:  # both runs indexed the same files; the ratio is of their wall times
        on_ray = figures["index_rtf_ray_2_workers"]
        assert on_ray["value"] == pytest.approx(on_ray["detail"]["video_s"] / on_ray["detail"]["ray_wall_s"], rel=0.02)
        assert on_ray["baseline"] == pytest.approx(
            on_ray["detail"]["video_s"] / on_ray["detail"]["single_wall_s"], rel=0.02
        )
    for key in ("serve_ask_cli_p50", "serve_search_cli_p50"):  # through the server, the answer a user wants
        assert figures[key]["detail"]["calls"] == 3 and figures[key]["detail"]["answer"], figures[key]
    # The ask really answered: the cold and warm answers agree (features from the cache are the same features).
    asked = figures["ask_warm_in_process"]["detail"]
    assert asked["cold"] == asked["warm"]
