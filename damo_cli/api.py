"""damo as a Python library: load a model once, then ask, search and index with it.

    import damo_cli

    session = damo_cli.load("damo-tiny", device="auto")
    result = session.ask("clip.mp4", "when does the dog jump?")  # AskResult: .answer, .moments, .to_json()
    report = session.index(["~/Videos"])                          # IndexReport (library=None: damo's own library)
    hits = session.search("someone opens a door", k=10)            # list[SearchHit], best first

The results are the objects whose `.to_json()` `damo ask --json`, `damo index --json` and `damo search --json` print:
the CLI verbs (`damo_cli/commands/library_cmds.py`) only parse arguments, call a `Session` and render, and
`damo serve` (`damo_cli/server/`) keeps one `Session` loaded for many requests.

What is loaded when: `load()` loads DaMO's fusion model (seconds); the text encoder loads with the first search or
question; the frozen video and audio encoders, OCR and the sound detector only when a video must be analysed (a
video already indexed or asked about is read from the analysis cache), and the LLM only for a question that needs
words from it. A session may be shared by threads: the text encoder, analysing a video and the LLM are each used by
one thread at a time (their tokenizers and lazily loaded backbones are not thread-safe); searching needs one
`Library` per thread (SQLite), so pass a library folder, or a `Library` opened in the calling thread.

This module imports nothing heavy at import time: `import damo_cli` stays fast and never imports torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from damo_cli.commands.inputs import local_path, nonblank

if TYPE_CHECKING:
    from collections.abc import Iterator

    from damo_cli.pipeline.analyse import Analyser, LoadedModel, VideoAnalysis
    from damo_cli.pipeline.ask import AskResult
    from damo_cli.pipeline.indexer import IndexReport
    from damo_cli.pipeline.ray_index import RayPlan
    from damo_cli.pipeline.search import SearchHit
    from damo_cli.store import Library

__all__ = ["Session", "load", "library_stats"]

# status(message) -> a context manager shown while that step runs (the CLI passes rich's `Console.status`)
Status = Callable[[str], AbstractContextManager[Any]]
# on_event(kind, path, detail) while indexing: "found" (detail: how many files), "start", "indexed", "skipped",
# "moved" (detail: where from), "failed" (detail: the one-line error)
IndexEvent = Callable[[str, Path, str], None]


def _quiet(_message: str) -> AbstractContextManager[Any]:
    return nullcontext()


def load(model: str = "damo-tiny", device: str = "auto") -> Session:
    """A `Session` with `model` (a card name such as "damo-tiny", or a trained model folder) loaded on `device`
    ("auto": cuda > mps > cpu)."""
    return Session(model, device)


class Session:
    """One loaded model, reused for every question, search and index run (see the module docstring)."""

    def __init__(self, model: str = "damo-tiny", device: str = "auto") -> None:
        from damo_cli.device import resolve_device
        from damo_cli.pipeline.loading import load_model

        self.device: str = resolve_device(device)
        self.model: LoadedModel = load_model(str(model), self.device)
        self._analyser: Analyser | None = None
        self._text: Any = None
        self._loading = threading.RLock()  # lazy loads happen once, whichever thread asks first
        self._text_lock = threading.Lock()
        self._analysing = threading.Lock()
        self._talking = threading.Lock()

    @property
    def name(self) -> str:
        """The model's card name (what `AskResult.model` says)."""
        return self.model.name

    @property
    def fingerprint(self) -> str:
        """What the library and the analysis cache know this model's outputs by."""
        from damo_cli.pipeline.analyse import Analyser

        return Analyser.fingerprint_of(self.model)

    @property
    def analyser(self) -> Analyser:
        """The frozen backbones (loaded when first needed) and the model: what analyses a video."""
        with self._loading:
            if self._analyser is None:
                from damo_cli.pipeline.analyse import Analyser

                analyser = Analyser(self.model, self.device)
                if self._text is None:
                    self._text = _OneAtATime(analyser.text, self._text_lock)
                analyser.text = self._text  # one text encoder for search, ask and index
                self._analyser = analyser
            return self._analyser

    @property
    def text(self) -> Any:
        """The text encoder (MiniLM): queries and lines of words -> unit vectors in the library's space."""
        with self._loading:
            if self._text is None:
                from damo_cli.encoders.loader import load_backbone

                self._text = _OneAtATime(load_backbone(self.model.card, "text", self.device), self._text_lock)
            return self._text

    # ------------------------------------------------------------------------------------------------ ask

    def ask(self, video: str | Path, question: str, *, status: Status | None = None) -> AskResult:
        """Answer `question` about the video file `video`, with the moments that support the answer, best first.

        A video analysed before (by `ask` or `index`, with this model) is read from the analysis cache, so a "when"
        question about it loads no video, audio or language model. Bad input raises a one-line `DamoError` before
        anything loads: a URL or an empty question (`UsageError`), a file that is not a usable video (`MediaError`).
        """
        from damo_cli.media import probe
        from damo_cli.pipeline.ask import answer_question, is_temporal
        from damo_cli.store import content_key

        status = status or _quiet
        video = local_path(Path(video).expanduser())
        nonblank(question, "question")
        probe(video)  # bad input fails here, in one line, before any model loads
        if self._analyser is None:
            with status("loading the model"):
                self.analyser  # noqa: B018 - loads it
        analysis = self._analysis(video, content_key(video), status)
        # A "when" question is answered from the evidence alone; other questions may need the LLM, one at a time.
        talking = nullcontext() if is_temporal(question) else self._talking
        with status("thinking"), talking:
            result = answer_question(self.analyser, analysis, question, self.device)
        result.video = video.absolute()
        return result

    def _analysis(self, video: Path, key: str, status: Status) -> VideoAnalysis:
        from damo_cli.pipeline import feature_cache

        fingerprint = self.analyser.fingerprint
        analysis = feature_cache.load(video, key, fingerprint)
        if analysis is not None:
            return analysis
        # one video at a time; another thread may have just analysed this one, so the cache is looked at again
        with self._analysing, status("watching and listening"):
            return feature_cache.load_or_analyse(self.analyser, video, key)[0]

    # --------------------------------------------------------------------------------------------- search

    def search(
        self,
        query: str,
        k: int = 10,
        library: str | Path | Library | None = None,
        path_filter: str | None = None,
    ) -> list[SearchHit]:
        """The k best moments for `query` across the library, best first.

        library: a library folder (None: damo's own, where `damo index` stores), or a `Library` opened in this
        thread. path_filter: only videos under this folder or matching this glob (`--path`).
        """
        from damo_cli.pipeline.search import search_library

        nonblank(query, "search query")
        with _opened(library, create=False) as lib:
            vector = self.text.encode([query])[0]
            bridge = self._zero_shot_query(query)
            return search_library(lib, query, vector, self.fingerprint, self.model.trained, k, path_filter, bridge)

    def _zero_shot_query(self, query: str) -> Any:
        """The zero-shot channel's own query vector and calibration (a hub card's image-text tower), or None where
        that channel is searched with the text encoder's vector (the ImageNet bridge)."""
        from damo_cli.pipeline.zero_shot import ImageTextTower, own_query, zero_shot_kind

        if zero_shot_kind(self.model.card) != ImageTextTower.kind:
            return None
        with self._text_lock:  # the tower's tokenizer, like the text encoder's, serves one thread at a time
            return own_query(self.analyser.zero_shot, query)

    # ---------------------------------------------------------------------------------------------- index

    def index(
        self,
        paths: str | Path | Iterable[str | Path],
        library: str | Path | Library | None = None,
        *,
        extensions: Iterable[str] | None = None,
        workers: int = 1,
        on_event: IndexEvent | None = None,
        ray: str | RayPlan | None = None,
    ) -> IndexReport:
        """Store videos (files, or folders walked for `extensions`) in the library for search; unchanged files are
        skipped and moved files are not encoded again. Errors per file are in the report, not raised.

        ray: decode and encode on a Ray cluster ("auto" or its address, or a `RayPlan`; `workers` is then ignored),
        storing here as without it (needs `pip install 'damo-cli[ray]'`)."""
        from damo_cli.pipeline.indexer import VIDEO_EXTENSIONS, Indexer

        if isinstance(paths, str | Path):
            paths = [paths]  # one folder or file, not the letters of its name
        roots = [local_path(Path(p).expanduser()) for p in paths]
        with _opened(library, create=True) as lib:
            shared = {"model": self.model, "make_analyser": lambda: self.analyser}
            if ray is None:
                indexer = Indexer(self.model.source, self.device, lib, workers, **shared)
            else:
                from damo_cli.pipeline.ray_index import RayIndexer, RayPlan, require_ray

                require_ray()
                plan = ray if isinstance(ray, RayPlan) else RayPlan(address=ray)
                indexer = RayIndexer(self.model.source, self.device, lib, plan=plan, **shared)
            return indexer.run(roots, extensions or VIDEO_EXTENSIONS, on_event or (lambda *_: None))

    def describe(self) -> dict:
        """What this session holds: the model, its fingerprint and the device."""
        return {
            "model": self.model.name,
            "source": self.model.source,
            "trained": self.model.trained,
            "fingerprint": self.fingerprint,
            "device": self.device,
        }


def library_stats(library: str | Path | Library | None = None) -> dict:
    """What a library holds, as `damo index --stats --json` prints it (an error when there is no library yet)."""
    with _opened(library, create=False) as lib:
        stats = lib.stats()
    payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(stats).items()}
    payload["last_indexed"] = stats.last_indexed.isoformat() if stats.last_indexed else None
    return payload


@contextmanager
def _opened(library: str | Path | Library | None, *, create: bool) -> Iterator[Library]:
    """`library` itself when it is an open `Library`; else the library in that folder, closed afterwards."""
    from damo_cli.store import Library

    if isinstance(library, Library):
        yield library
        return
    lib = Library.open(local_path(Path(library)) if library is not None else None, create=create)
    try:
        yield lib
    finally:
        lib.close()


class _OneAtATime:
    """A text encoder shared by threads: a fast tokenizer fails when two threads use it at once ("Already
    borrowed"), so `encode` takes a lock (it runs in milliseconds); everything else is the encoder's own."""

    def __init__(self, encoder: Any, lock: threading.Lock) -> None:
        self._encoder = encoder
        self._lock = lock

    def encode(self, texts: list[str], batch_size: int = 64) -> Any:
        with self._lock:
            return self._encoder.encode(texts, batch_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)
