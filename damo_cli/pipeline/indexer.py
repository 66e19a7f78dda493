"""`damo index`: find videos, skip what is already stored, analyse the rest, store each in one transaction.

Channels stored per video (all in MiniLM's 384-d text space, so one query vector searches them all):
- "fused": the DaMO per-time head (only meaningful with trained weights);
- "bridge": the zero-shot ImageNet-class bridge of the same steps;
- "speech": each transcript line embedded as a sentence (what is said, matched by meaning);
- "screen": each line of on-screen text embedded the same way (what is written, matched by meaning);
- "sound": each sound event's sentence ("music is playing").
Transcript lines and on-screen text are also stored as text (full-text search), sound events as their sentence.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from damo_cli.errors import DamoError
from damo_cli.pipeline import feature_cache
from damo_cli.pipeline.analyse import Analyser, LoadedModel, VideoAnalysis
from damo_cli.store import Library, Lookup, Moments, TranscriptLine

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts", ".mts", ".m2ts",
)  # fmt: skip


@dataclass
class IndexReport:
    indexed: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    moved: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "indexed": len(self.indexed),
            "skipped": len(self.skipped),
            "failed": [{"path": str(p), "error": e} for p, e in self.failed],
        }


def find_videos(paths: Iterable[Path], extensions: Iterable[str] = VIDEO_EXTENSIONS) -> Iterator[Path]:
    """Files named on the command line are taken as they are; folders are walked for the given extensions."""
    wanted = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # hidden folders (.git, caches) skipped
                for name in sorted(files):
                    if Path(name).suffix.lower() in wanted and not name.startswith("."):
                        yield Path(root) / name
        else:
            yield path  # even if missing: the error is reported per file, not fatal


def line_moments(lines: list[TranscriptLine], analyser: Analyser) -> list[Moments]:
    """One vector channel per source of lines ("speech", "screen", "sound"), each line embedded as a sentence."""
    sets = []
    for source in ("speech", "screen", "sound"):
        picked = [line for line in lines if line.source == source]
        vectors = analyser.text.encode([x.text for x in picked]) if picked else np.zeros((0, analyser.text.dim))
        sets.append(Moments([x.start for x in picked], [x.end for x in picked], vectors, source))
    return sets


def store_analysis(writer, look: Lookup, analysis: VideoAnalysis, analyser: Analyser) -> None:  # noqa: ANN001
    spans = analysis.step_spans
    lines = analysis.lines()
    writer.add_video(
        look.entry(duration=analysis.duration, has_audio=analysis.has_audio),
        moments=[
            Moments(spans[:, 0], spans[:, 1], analysis.fused, "fused"),
            Moments(spans[:, 0], spans[:, 1], analysis.bridge, "bridge"),
            *line_moments(lines, analyser),
        ],
        transcript=lines,
    )


# ------------------------------------------------------------------------------------------- worker processes
_worker: Analyser | None = None


def _init_worker(model_name: str, device: str, threads: int) -> None:
    import torch

    from damo_cli.pipeline.loading import load_model

    torch.set_num_threads(threads)
    os.environ["DAMO_THREADS"] = str(threads)
    global _worker
    _worker = Analyser(load_model(model_name, device), device)


def _analyse_in_worker(path: Path) -> VideoAnalysis:
    assert _worker is not None
    return _worker.analyse(path)


# ---------------------------------------------------------------------------------------------------- driver
class Indexer:
    def __init__(
        self,
        model_name: str,
        device: str,
        library: Library,
        workers: int = 1,
        *,
        model: LoadedModel | None = None,
        make_analyser: Callable[[], Analyser] | None = None,
    ) -> None:
        """model: `model_name` already loaded (an API session's); make_analyser: where the analyser comes from
        when something needs encoding (a session shares its own), else one is made here."""
        from damo_cli.pipeline.loading import load_model

        self.model_name, self.device, self.library, self.workers = model_name, device, library, max(1, workers)
        self.model = model if model is not None else load_model(model_name, device)
        self._make_analyser = make_analyser or (lambda: Analyser(self.model, self.device))
        self._analyser: Analyser | None = None

    @property
    def analyser(self) -> Analyser:
        if self._analyser is None:  # the backbones load only when something actually needs encoding
            self._analyser = self._make_analyser()
        return self._analyser

    @property
    def fingerprint(self) -> str:
        return Analyser.fingerprint_of(self.model)

    def run(
        self,
        roots: list[Path],
        extensions: Iterable[str] = VIDEO_EXTENSIONS,
        on_event: Callable[[str, Path, str], None] = lambda *_: None,
    ) -> IndexReport:
        """on_event(kind, path, detail): kind is "start", "indexed", "skipped", "moved", "failed"."""
        report = IndexReport()
        files = list(dict.fromkeys(p.expanduser().absolute() for p in find_videos(roots, extensions)))
        on_event("found", Path("."), str(len(files)))
        with self.library.writer() as writer:
            todo: list[Lookup] = []
            for path in files:
                try:
                    look = writer.lookup(path, self.fingerprint)
                except (DamoError, OSError) as err:
                    self._fail(writer, report, path, err, on_event)
                    continue
                if look.needs_indexing:
                    todo.append(look)
                elif look.status in ("moved", "copied"):
                    report.moved.append(path)
                    on_event("moved", path, f"from {look.previous_path}")
                else:
                    report.skipped.append(path)
                    on_event("skipped", path, look.status)
            for look, result in self._analyse_all(todo, on_event):
                if isinstance(result, BaseException):
                    self._fail(writer, report, look.path, result, on_event)
                    continue
                store_analysis(writer, look, result, self.analyser)
                feature_cache.save(result, look.content_key, self.fingerprint)
                report.indexed.append(look.path)
                on_event("indexed", look.path, "")
            report.removed = writer.remove_missing([r.expanduser().absolute() for r in roots if r.is_dir()])
        self.library.refresh_vectors()
        return report

    def _fail(self, writer, report: IndexReport, path: Path, err: BaseException, on_event) -> None:  # noqa: ANN001
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        writer.record_failure(path, message)
        report.failed.append((path, message))
        on_event("failed", path, message)

    def _analyse_all(self, todo: list[Lookup], on_event) -> Iterator[tuple[Lookup, VideoAnalysis | BaseException]]:  # noqa: ANN001
        """Analyse in this process, or in `workers` processes; results come back in order and are stored here,
        so only this process ever writes to the library."""
        if not todo:
            return
        if self.workers == 1 or len(todo) == 1:
            for look in todo:
                on_event("start", look.path, "")
                cached = feature_cache.load(look.path, look.content_key, self.fingerprint)
                try:
                    yield look, cached or self.analyser.analyse(look.path)
                except (DamoError, OSError, RuntimeError, ValueError) as err:
                    yield look, err
            return
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        with ProcessPoolExecutor(
            self.workers, initializer=_init_worker, initargs=(self.model_name, self.device, threads)
        ) as pool:
            futures: list[tuple[Lookup, Future]] = [(look, pool.submit(_analyse_in_worker, look.path)) for look in todo]
            for look, future in futures:
                on_event("start", look.path, "")
                try:
                    yield look, future.result()
                except (DamoError, OSError, RuntimeError, ValueError) as err:
                    yield look, err
