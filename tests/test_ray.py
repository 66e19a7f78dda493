"""`damo index --ray`: the same library as a single-process index, on a local Ray instance this module starts.

The two indexes read two copies of the same clips that differ only in a container tag, so their content keys differ
and neither run can reuse the other's cached features or analyses: each decodes and encodes on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import damo_cli

NO_EXTRA = "the ray extra is not installed (pip install 'damo-cli[ray]')"

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
QUERIES = ("ask not what your country can do for you", "quarterly results", "music playing")


def damo(*args: str, env: dict[str, str] | None = None, without_ray: bool = False) -> subprocess.CompletedProcess[str]:
    """The CLI in a new process; without_ray: as where the extra is not installed (`import ray` fails)."""
    blocked = "import sys; sys.modules['ray'] = None; sys.argv[0] = 'damo'; from damo_cli.cli import main; main()"
    return subprocess.run(
        [sys.executable, *(["-c", blocked] if without_ray else ["-m", "damo_cli"]), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DAMO_NO_SERVER": "1", **(env or {})},
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray instance with 2 CPUs (2 encoder actors), as a cluster the CLI connects to by address."""
    import logging

    ray = pytest.importorskip("ray", reason=NO_EXTRA)
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def twin_folders(tmp_path_factory: pytest.TempPathFactory, ffmpeg_exe: str) -> tuple[Path, Path]:
    """Two folders holding the same short clips (speech; on-screen text then music) and a file that is not a video."""
    ffmpeg = [ffmpeg_exe, "-hide_banner", "-loglevel", "error", "-y"]
    source = tmp_path_factory.mktemp("ray-source")
    clips = {
        "speech.mp4": (EXAMPLES / "bunny_speech.mp4", "0", "8"),
        "slides.mp4": (EXAMPLES / "slides_music.mp4", "4", "8"),
    }
    for name, (video, start, length) in clips.items():
        encode = ["-ss", start, "-t", length, "-i", str(video), "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac"]
        subprocess.run([*ffmpeg, *encode, str(source / name)], check=True)
    folders = []
    for side in ("single", "ray"):
        folder = tmp_path_factory.mktemp(f"ray-{side}")
        tag = f"{side}-{uuid.uuid4()}"  # new content keys every run: nothing comes from an earlier run's caches
        for name in clips:
            remux = ["-i", str(source / name), "-map", "0", "-c", "copy", "-metadata", f"comment={tag}"]
            subprocess.run([*ffmpeg, *remux, str(folder / name)], check=True)
        (folder / "notes.mp4").write_text("not a video")
        folders.append(folder)
    return folders[0], folders[1]


def library_view(session, library: Path, folder: Path) -> dict:  # noqa: ANN001 - damo_cli.Session
    """What a user sees of a library: its stats and the top hits of a few searches (paths made relative)."""
    stats = damo_cli.library_stats(library)
    keep = ("videos", "total_duration_s", "moments_by_channel", "transcript_lines", "screen_text_lines", "failures")
    hits = {
        query: [
            (h.path.relative_to(folder).as_posix(), round(h.start, 2), round(h.end, 2), round(h.score, 2), h.text)
            for h in session.search(query, 3, library)
        ]
        for query in QUERIES
    }
    return {"stats": {k: stats[k] for k in keep}, "hits": hits}


def relative_report(report: dict, folder: Path) -> dict:
    failed = [(Path(f["path"]).name, f["error"].replace(str(folder), "DIR")) for f in report["failed"]]
    return {"indexed": report["indexed"], "skipped": report["skipped"], "failed": failed}


@pytest.mark.slow
def test_ray_index_is_the_single_process_library(
    ray_address: str, twin_folders: tuple[Path, Path], tmp_path: Path
) -> None:
    single_dir, ray_dir = twin_folders
    single = json.loads(ok(damo("index", str(single_dir), "--library", str(tmp_path / "single"), "--json")))
    on_ray = json.loads(
        ok(damo("index", str(ray_dir), "--library", str(tmp_path / "ray"), "--json", "--ray", ray_address))
    )
    # the file that is not a video is skipped with the same one-line reason, and the run goes on
    assert relative_report(on_ray, ray_dir) == relative_report(single, single_dir)
    assert on_ray["indexed"] == 2 and [f["path"] for f in on_ray["failed"]] == [str(ray_dir / "notes.mp4")]

    session = damo_cli.load("damo-tiny", "cpu")  # searched the way `damo search` searches, in this process
    single_view = library_view(session, tmp_path / "single", single_dir)
    assert single_view["stats"]["videos"] == 2
    tops = [single_view["hits"][query][0][0] for query in QUERIES]
    assert tops == ["speech.mp4", "slides.mp4", "slides.mp4"]  # said, on screen, heard: each channel has a hit
    assert library_view(session, tmp_path / "ray", ray_dir) == single_view


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("ray_option", "env", "code", "says"),
    [
        ("nonsense", {}, 2, "--ray: expected auto or a cluster address HOST:PORT, got 'nonsense'"),
        # auto takes RAY_ADDRESS first, as Ray does; nothing listens there
        ("auto", {"RAY_ADDRESS": "127.0.0.1:1"}, 1, "cannot reach the Ray cluster at 127.0.0.1:1"),
    ],
)
def test_bad_cluster_address_is_one_line(
    ray_option: str, env: dict[str, str], code: int, says: str, tmp_path: Path
) -> None:
    pytest.importorskip("ray", reason=NO_EXTRA)
    (tmp_path / "notes.mp4").write_text("not a video")
    result = damo("index", str(tmp_path), "--library", str(tmp_path / "lib"), "--ray", ray_option, env=env)
    assert result.returncode == code
    assert one_error_line(result).startswith(f"damo: error: {says}")


def test_without_the_extra_ray_is_one_line(tmp_path: Path) -> None:
    result = damo("index", str(tmp_path), "--ray", "auto", without_ray=True)
    assert result.returncode == 2
    assert one_error_line(result) == "damo: error: --ray needs Ray, which is not installed: pip install 'damo-cli[ray]'"


def test_the_actor_pool_fits_the_cluster() -> None:
    from damo_cli.errors import DamoError
    from damo_cli.pipeline.ray_index import RayPlan, Workers, worker_resources

    cpus, gpus = {"CPU": 2.0}, {"CPU": 8.0, "GPU": 2.0}
    assert worker_resources(cpus, RayPlan(), files=10) == Workers(2, 1.0, 0.0, "cpu")  # one actor per CPU
    assert worker_resources(cpus, RayPlan(actors=4), files=10) == Workers(4, 0.5, 0.0, "cpu")  # share, never wait
    assert worker_resources(cpus, RayPlan(), files=1).actors == 1  # no more actors than files
    assert worker_resources(gpus, RayPlan(), files=10) == Workers(2, 1.0, 1.0, "cuda")  # one actor per GPU
    assert worker_resources(gpus, RayPlan(device="cpu"), files=10) == Workers(8, 1.0, 0.0, "cpu")
    assert worker_resources(gpus, RayPlan(actors=4, device="cuda:1"), files=10) == Workers(4, 1.0, 0.5, "cuda")
    with pytest.raises(DamoError, match="no GPUs"):
        worker_resources(cpus, RayPlan(device="cuda"), files=3)
