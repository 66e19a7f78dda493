"""Index throughput on a local 2-worker Ray instance beside the single process, on the same files in the same run.

Both are the `damo index` CLI in a subprocess with a fresh DAMO_HOME (nothing cached), over the same copies of the
bench's clip; both times include the process start and the model load (on Ray, each actor loads its own). The Ray
instance is started by the bench before its run and is not timed: it stands for a cluster that is already up. On a
2-core machine two actors cannot beat one process that uses both cores; the figure is for planning, not a target.
"""

from __future__ import annotations

import json
import logging
import subprocess
import uuid
from pathlib import Path

from damo_cli.bench.homes import fresh_home, run_cli
from damo_cli.bench.media import ffmpeg_exe
from damo_cli.bench.report import Figure, span, stopwatch
from damo_cli.media import probe

RAY_WORKERS = 2
NOT_INSTALLED = "skipped: ray is not installed (pip install 'damo-cli[ray]')"


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None


def distinct_copies(clip: Path, folder: Path, copies: int) -> list[Path]:
    """`copies` files with the clip's streams (no re-encoding) under different container tags: their content keys
    differ, so the index encodes each one instead of recognising copies of one file."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(copies):
        out = folder / f"copy-{i}.mp4"
        tag = ["-metadata", f"comment=damo bench copy {i} {uuid.uuid4()}"]
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip), "-map", "0", "-c", "copy"]
        subprocess.run([*cmd, *tag, str(out)], check=True, capture_output=True)
        made.append(out)
    return made


def ray_throughput(clip: Path, copies: int, work: Path, user_cache: Path, model: str, device: str) -> list[Figure]:
    """The figure, or nothing when the ray extra is not installed (the caller says so)."""
    if not ray_available():
        return []
    import ray

    files = distinct_copies(clip, work / "ray-files", copies)
    video_s = sum(probe(f).duration for f in files)
    common = ["--json", "--model", model, "--device", device]

    def index(name: str, extra: list[str]) -> float:
        home = fresh_home(work, f"home-{name}", user_cache)
        args = ["index", str(work / "ray-files"), "--library", str(work / f"lib-{name}"), *common, *extra]
        run = run_cli(args, home, work / f"log-{name}")
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        if summary.get("indexed") != copies:
            raise RuntimeError(f"`damo index {' '.join(extra)}` in the bench indexed {summary}, not {copies} files")
        return run.wall_s

    single_s = index("ray-baseline-single", [])
    with stopwatch() as started:
        context = ray.init(
            num_cpus=RAY_WORKERS, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False
        )
    start_s = started()
    try:
        ray_s = index("ray-2-workers", ["--ray", context.address_info["gcs_address"], "--workers", str(RAY_WORKERS)])
    finally:
        ray.shutdown()
    detail = {
        "files": copies,
        "video_s": round(video_s, 2),
        "ray_wall_s": round(ray_s, 2),
        "single_wall_s": round(single_s, 2),
        "ray_start_s_not_counted": round(start_s, 2),
        "ray_version": ray.__version__,
        "includes": "process start, model load (per actor on Ray), decode, encode, store; nothing cached",
    }
    return [
        Figure(
            "index_rtf_ray_2_workers",
            f"`damo index --ray`, local {RAY_WORKERS}-worker Ray, {copies} × {span(video_s / copies)} clips",
            video_s / ray_s,
            "× realtime",
            "the same files, one process (`damo index`)",
            video_s / single_s,
            "higher",
            detail,
        )
    ]
