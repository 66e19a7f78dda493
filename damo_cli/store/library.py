"""The library: `Library` (open, search, stats) and `Writer` (the one process allowed to change it).

Usage and guarantees are in the package docstring (`damo_cli/store/__init__.py`).
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from pathlib import Path
from typing import Literal

import numpy as np

from damo_cli.errors import StoreError
from damo_cli.paths import library_dir
from damo_cli.schema import TranscriptLine
from damo_cli.store import schema, vectors
from damo_cli.store.keys import content_key
from damo_cli.store.lock import WriterLock, folder_lock
from damo_cli.store.moments import DEFAULT_MARGIN, Moment, merge_hits

LOCK_NAME = "library.lock"
VECTORS_DIR = "vectors"
SNIPPET_CHARS = 240
# Text lines have a source: "speech" (said), "screen" (written on screen), "sound" (a sound event, in words).
TEXT_CHANNELS = {"speech": "transcript", "screen": "screen_text"}  # sources full-text search reads -> its channel
SNIPPET_SOURCE = {"screen": "screen", "sound": "sound"}  # a vector channel's hit shows lines of this source
RACY_WINDOW_NS = 3_000_000_000  # see _trusted_mtime
_VECTOR_DTYPE = np.dtype("<f2")  # half the disk of float32; cosine ranking does not notice the rounding
_DB_FILES = ("", "-wal", "-shm")  # the database and SQLite's companions, moved together

Status = Literal["new", "unchanged", "moved", "copied", "changed"]


# --------------------------------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class VideoEntry:
    """What the store records about one file (besides its moments and transcript). Build it with `Lookup.entry`."""

    path: Path
    content_key: str
    fingerprint: str
    size: int
    mtime_ns: int
    duration: float
    has_audio: bool
    seen_ns: int | None = None  # when size and mtime were read (time.time_ns()); None: at add time


@dataclass(frozen=True, eq=False)
class Moments:
    """Per-time-step vectors of one channel of one video: n starts, n ends (seconds), an n x d array."""

    starts: np.ndarray
    ends: np.ndarray
    vectors: np.ndarray
    channel: str = "fused"

    def __post_init__(self) -> None:
        starts = np.asarray(self.starts, dtype=np.float64).reshape(-1)
        ends = np.asarray(self.ends, dtype=np.float64).reshape(-1)
        vecs = np.asarray(self.vectors, dtype=np.float32)
        if vecs.ndim == 1 and vecs.size == 0:
            vecs = vecs.reshape(0, 0)
        if vecs.ndim != 2 or not (len(starts) == len(ends) == len(vecs)):
            raise ValueError(
                f"Moments need n starts, n ends and an n x d array; got {starts.shape}, {ends.shape}, {vecs.shape}"
            )
        if len(vecs) and vecs.shape[1] == 0:
            raise ValueError("Moments vectors have zero dimensions")
        if not (np.isfinite(starts).all() and np.isfinite(ends).all() and np.isfinite(vecs).all()):
            raise ValueError("Moments contain NaN or infinite values")
        if (ends < starts).any():
            raise ValueError("a moment ends before it starts")
        if not self.channel or not isinstance(self.channel, str):
            raise ValueError("Moments need a channel name")
        object.__setattr__(self, "starts", starts)
        object.__setattr__(self, "ends", ends)
        object.__setattr__(self, "vectors", vecs)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


@dataclass(frozen=True)
class Lookup:
    """What `Writer.lookup` found; `needs_indexing` says whether to decode and encode the file."""

    status: Status
    path: Path
    content_key: str
    fingerprint: str
    size: int
    mtime_ns: int
    seen_ns: int  # when size and mtime were read
    video_id: int | None = None  # the stored row, for every status but "new" and "changed"
    previous_path: Path | None = None  # "moved" / "copied": where its moments came from
    reason: str = ""  # "changed": "content changed" or "model changed"

    @property
    def needs_indexing(self) -> bool:
        return self.status in ("new", "changed")

    def entry(self, *, duration: float, has_audio: bool) -> VideoEntry:
        """The VideoEntry to pass to `Writer.add_video` (size and mtime as seen at lookup time)."""
        return VideoEntry(
            self.path, self.content_key, self.fingerprint, self.size, self.mtime_ns, duration, has_audio, self.seen_ns
        )


@dataclass(frozen=True)
class VideoRecord:
    id: int
    path: Path
    content_key: str
    fingerprint: str
    size: int
    mtime_ns: int
    duration: float
    has_audio: bool
    n_moments: int
    indexed_at: float


@dataclass(frozen=True)
class Failure:
    path: Path
    error: str
    attempts: int
    last_attempt: float


@dataclass(frozen=True)
class LibraryStats:
    root: Path
    videos: int
    moments: int
    moments_by_channel: dict[str, int]
    transcript_lines: int
    screen_text_lines: int
    total_duration_s: float
    size_bytes: int  # database, its WAL and the vector caches
    fingerprints: dict[str, int]  # model fingerprint -> videos indexed with it
    last_indexed: datetime | None
    failures: int
    schema_version: int
    full_text: bool  # transcript search uses FTS5 (else a slower substring match)
    vector_indexes: dict[str, str] = field(default_factory=dict)  # "fingerprint/channel" -> "exact" | "ivf"


def _video_row(row: sqlite3.Row | tuple) -> VideoRecord:
    vid, path, key, fp, size, mtime, duration, audio, n, at = row
    return VideoRecord(vid, Path(path), key, fp, size, mtime, duration, bool(audio), n, at)


_VIDEO_COLUMNS = "id, path, content_key, fingerprint, size, mtime_ns, duration, has_audio, n_moments, indexed_at"


def _canonical(path: Path | str) -> Path:
    """One spelling per file: absolute, `~` expanded, symlinks resolved."""
    return Path(path).expanduser().resolve()


# ------------------------------------------------------------------------------------------------------ library


@contextmanager
def _closed_on_error(resource: Library | sqlite3.Connection, db: Path) -> Iterator[None]:
    """Close `resource` if the block fails; an SQLite error leaves as the one-line StoreError a user can act on."""
    try:
        yield
    except sqlite3.Error as exc:
        resource.close()
        raise schema.as_store_error(db, exc) from None
    except BaseException:
        resource.close()
        raise


class Library:
    """An open library folder. Not thread-safe: one Library per thread (processes may share the folder)."""

    def __init__(self, root: Path, conn: sqlite3.Connection, full_text: bool, approx_threshold: int) -> None:
        self.root = root
        self.db_path = root / schema.DB_NAME
        self.approx_threshold = approx_threshold
        self._conn = conn
        self._full_text = full_text
        self._indexes: dict[tuple[str, str], tuple[int, object]] = {}  # (fp, channel) -> (generation, faiss index)

    # ---- opening and closing

    @classmethod
    def default_root(cls) -> Path:
        return library_dir()

    @classmethod
    def open(
        cls,
        root: Path | str | None = None,
        *,
        create: bool = True,
        check: bool = False,
        approx_threshold: int = vectors.APPROX_THRESHOLD,
    ) -> Library:
        """Open (or, with `create`, make) the library in `root` (default: `data_dir()/library`).

        Always checks the file is a damo library of a schema this damo reads (StoreError otherwise, one line).
        `check=True` also runs SQLite's quick_check over every page (reads the whole file); `writer()` always does.
        """
        root = _canonical(root) if root is not None else _canonical(cls.default_root())
        db = root / schema.DB_NAME
        if not db.exists():
            if not create:
                raise StoreError(f"no library at {root} yet: index some videos first with: damo index PATH...")
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the library folder {root}: {exc.strerror or exc}") from None
        with folder_lock(root):  # milliseconds: serialises only the creation and checks of concurrent opens
            lib = cls._open_locked(root, db, create=create, approx_threshold=approx_threshold)
        if check:
            with _closed_on_error(lib, db):
                lib.check()
        return lib

    @classmethod
    def _open_locked(cls, root: Path, db: Path, *, create: bool, approx_threshold: int) -> Library:
        if db.exists():
            if db.stat().st_size == 0 and not create:
                raise StoreError(f"the library {db} is empty: index some videos first with: damo index PATH...")
            schema.check_file(db)
        try:
            conn = schema.connect(db)
        except sqlite3.Error as exc:
            raise schema.as_store_error(db, exc) from None
        with _closed_on_error(conn, db):
            return cls(root, conn, schema.initialise_or_check(conn, db), approx_threshold)

    @classmethod
    def quarantine_and_recreate(
        cls, root: Path | str | None = None, **open_args: object
    ) -> tuple[Library, Path | None]:
        """`damo index --rebuild`: move the library file aside (renamed with a timestamp, never deleted) and
        create an empty one. Returns the new library and where the old file went (None if there was none).

        Works on a damaged file (it is never opened). Takes the writer lock, so it refuses while an index runs.
        Close any Library this process has open on `root` first.
        """
        root = _canonical(root) if root is not None else _canonical(cls.default_root())
        db = root / schema.DB_NAME
        with WriterLock(root / LOCK_NAME, root):
            aside: Path | None = None
            if any(Path(f"{db}{suffix}").exists() for suffix in _DB_FILES):
                stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
                aside = root / f"library-aside-{stamp}.db"
                n = 1
                while any(Path(f"{aside}{suffix}").exists() for suffix in _DB_FILES):
                    n += 1
                    aside = root / f"library-aside-{stamp}-{n}.db"
                # The WAL keeps its pairing with the main file (SQLite finds `<name>-wal`), so the aside copy
                # stays openable for forensics or recovery.
                for suffix in _DB_FILES:
                    source = Path(f"{db}{suffix}")
                    if source.exists():
                        os.replace(source, Path(f"{aside}{suffix}"))
            _remove_vector_caches(root / VECTORS_DIR)
            lib = cls.open(root, create=True, **open_args)  # type: ignore[arg-type]
        return lib, aside

    def close(self) -> None:
        self._indexes.clear()
        self._conn.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- integrity

    def check(self, full: bool = False) -> None:
        """Raise a one-line StoreError if SQLite finds damage (quick_check; `full` runs integrity_check)."""
        pragma = "integrity_check" if full else "quick_check"
        with self._guard():
            rows = [r[0] for r in self._conn.execute(f"PRAGMA {pragma}(5)")]
        if rows != ["ok"]:
            lines = [line.strip() for r in rows for line in str(r).splitlines()]
            found = [line for line in lines if line and not line.startswith("***")]  # skip "*** in database main"
            detail = found[0] if found else "check returned nothing"
            raise schema.damaged(self.db_path, f"{pragma}: {detail[:120]}")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # our bugs, not the user's: keep the traceback
        except sqlite3.Error as exc:
            raise schema.as_store_error(self.db_path, exc) from None

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """IMMEDIATE: a write transaction. DEFERRED: a consistent read snapshot (WAL)."""
        with self._guard():
            self._conn.execute(f"BEGIN {mode}")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # ---- writing

    @contextmanager
    def writer(self) -> Iterator[Writer]:
        """Hold the exclusive writer lock for the block; StoreError at once if another process holds it.

        Checks the file for damage first (reads it all once) so nothing is added to a damaged library.
        """
        lock = WriterLock(self.root / LOCK_NAME, self.root)
        lock.acquire()
        writer = Writer(self)
        try:
            self.check()
            yield writer
        finally:
            writer._closed = True
            lock.release()

    # ---- reading

    def video(self, path: Path | str) -> VideoRecord | None:
        with self._guard():
            row = self._conn.execute(
                f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE path = ?", (str(_canonical(path)),)
            ).fetchone()
        return _video_row(row) if row else None

    def videos(self) -> list[VideoRecord]:
        with self._guard():
            rows = self._conn.execute(f"SELECT {_VIDEO_COLUMNS} FROM videos ORDER BY path").fetchall()
        return [_video_row(r) for r in rows]

    def moments_of(self, video_id: int, channel: str = "fused") -> Moments:
        """The stored vectors of one video and channel (unit length at float16 precision), in time order."""
        with self._guard():
            rows = self._conn.execute(
                "SELECT m.start_s, m.end_s, m.vector, s.dim FROM moments m JOIN videos v ON v.id = m.video_id "
                "JOIN vector_sets s ON s.fingerprint = v.fingerprint AND s.channel = m.channel "
                "WHERE m.video_id = ? AND m.channel = ? ORDER BY m.start_s, m.id",
                (video_id, channel),
            ).fetchall()
        if not rows:
            return Moments(np.zeros(0), np.zeros(0), np.zeros((0, 1), np.float32), channel)
        dim = rows[0][3]
        vecs = self._decode([r[2] for r in rows], dim)
        return Moments(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), vecs, channel)

    def transcript_of(self, video_id: int, source: str = "speech") -> list[TranscriptLine]:
        """The video's lines of one source ("speech": what is said; "screen": what is written on screen)."""
        with self._guard():
            rows = self._conn.execute(
                "SELECT start_s, end_s, text, source FROM transcripts WHERE video_id = ? AND source = ? "
                "ORDER BY start_s, id",
                (video_id, source),
            ).fetchall()
        return [TranscriptLine(*r) for r in rows]

    def failures(self) -> list[Failure]:
        with self._guard():
            rows = self._conn.execute(
                "SELECT path, error, attempts, last_attempt FROM failures ORDER BY path"
            ).fetchall()
        return [Failure(Path(p), e, a, t) for p, e, a, t in rows]

    def stats(self) -> LibraryStats:
        with self._transaction("DEFERRED") as conn:
            videos, duration, last = conn.execute(
                "SELECT count(*), coalesce(sum(duration), 0), max(indexed_at) FROM videos"
            ).fetchone()
            by_channel = dict(conn.execute("SELECT channel, count(*) FROM moments GROUP BY channel").fetchall())
            lines = conn.execute("SELECT count(*) FROM transcripts WHERE source = 'speech'").fetchone()[0]
            screen_lines = conn.execute("SELECT count(*) FROM transcripts WHERE source = 'screen'").fetchone()[0]
            fps = dict(conn.execute("SELECT fingerprint, count(*) FROM videos GROUP BY fingerprint").fetchall())
            failures = conn.execute("SELECT count(*) FROM failures").fetchone()[0]
            version = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
            sets = conn.execute("SELECT fingerprint, channel, count FROM vector_sets WHERE count > 0").fetchall()
        size = sum(_size(Path(f"{self.db_path}{s}")) for s in _DB_FILES)
        cache = self.root / VECTORS_DIR
        if cache.is_dir():
            size += sum(_size(p) for p in cache.iterdir())
        kinds = {f"{fp}/{ch}": ("ivf" if n > self.approx_threshold else "exact") for fp, ch, n in sets}
        return LibraryStats(
            root=self.root,
            videos=videos,
            moments=sum(by_channel.values()),
            moments_by_channel=by_channel,
            transcript_lines=lines,
            screen_text_lines=screen_lines,
            total_duration_s=float(duration),
            size_bytes=size,
            fingerprints=fps,
            last_indexed=datetime.fromtimestamp(last) if last else None,
            failures=failures,
            schema_version=version,
            full_text=self._full_text,
            vector_indexes=kinds,
        )

    # ---- vector search

    def search(
        self,
        query: np.ndarray,
        k: int = 10,
        *,
        channel: str = "fused",
        fingerprint: str | None = None,
        path_filter: str | None = None,
        merge: bool = True,
        margin: float = DEFAULT_MARGIN,
        threshold: float | None = None,
    ) -> list[Moment]:
        """The k best moments for a query vector (cosine), best first, each with its transcript snippet.

        fingerprint: the model that encoded the query; may be left out while the library holds vectors of only
        one model in this channel. path_filter: a folder/file prefix (`~/Videos/2023`) or a glob (`*.mp4`,
        `holiday/*`; a relative glob matches anywhere in the path). merge=False returns raw per-step hits.
        """
        if k <= 0:
            return []
        found = self._vector_set(channel, fingerprint)
        if found is None:
            return []
        fp, dim, count, _ = found
        q = vectors.normalise(np.asarray(query, dtype=np.float32).reshape(-1))
        if q.shape[0] != dim:
            raise ValueError(f"query has {q.shape[0]} dimensions; the library's {channel!r} vectors have {dim}")
        raw_k = min(count, max(100, 20 * k)) if merge else k  # merging folds neighbouring steps: fetch more

        if path_filter:
            clause, args = _path_clause(path_filter)
            # Videos first, then their moments through moments_by_video (a join would scan the whole channel).
            where = (
                "FROM moments m WHERE m.channel = ? AND m.video_id IN "
                f"(SELECT v.id FROM videos v WHERE v.fingerprint = ? AND {clause})"
            )
            params = (channel, fp, *args)
            with self._guard():
                n = self._conn.execute(f"SELECT count(*) {where}", params).fetchone()[0]
                if n <= self.approx_threshold:  # few candidates: exact, straight from SQLite, no cache needed
                    rows = self._conn.execute(f"SELECT m.id, m.vector {where}", params).fetchall()
                else:
                    rows = self._conn.execute(f"SELECT m.id {where}", params).fetchall()
            if not rows:
                return []
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            if n <= self.approx_threshold:
                scores, hit_ids = vectors.exact_search(ids, self._decode([r[1] for r in rows], dim), q, raw_k)
            else:
                scores, hit_ids = vectors.search_index(self._index_for(fp, channel), q, raw_k, allowed_ids=ids)
        else:
            scores, hit_ids = vectors.search_index(self._index_for(fp, channel), q, raw_k)

        hits = self._hits(hit_ids, scores, channel)
        results = merge_hits(hits, margin=margin, threshold=threshold)[:k] if merge else hits[:k]
        return self._with_snippets(results)

    def refresh_vectors(self) -> dict[str, str]:
        """Bring every vector cache up to date now (call at the end of `damo index` so the next search is fast).

        Returns "fingerprint/channel" -> "exact" | "ivf".
        """
        with self._guard():
            sets = self._conn.execute("SELECT fingerprint, channel FROM vector_sets WHERE count > 0").fetchall()
        out = {}
        for fp, channel in sets:
            out[f"{fp}/{channel}"] = vectors.index_kind(self._index_for(fp, channel))
        return out

    def _vector_set(self, channel: str, fingerprint: str | None) -> tuple[str, int, int, int] | None:
        with self._guard():
            rows = self._conn.execute(
                "SELECT fingerprint, dim, count, generation FROM vector_sets WHERE channel = ? AND count > 0"
                + (" AND fingerprint = ?" if fingerprint is not None else ""),
                (channel, fingerprint) if fingerprint is not None else (channel,),
            ).fetchall()
        if not rows:
            return None
        if len(rows) > 1:
            names = ", ".join(sorted(r[0] for r in rows))
            raise StoreError(
                f"the library holds {channel!r} vectors of {len(rows)} models ({names}); say which model to search"
            )
        return rows[0]

    def _index_for(self, fp: str, channel: str) -> object:
        """The FAISS index of a vector set, from memory, the cache file, or rebuilt (then cached atomically)."""
        with self._transaction("DEFERRED") as conn:  # one snapshot: generation and vectors agree
            row = conn.execute(
                "SELECT dim, count, generation FROM vector_sets WHERE fingerprint = ? AND channel = ?", (fp, channel)
            ).fetchone()
            dim, count, generation = row if row else (1, 0, 0)  # (removed meanwhile: an empty index)
            held = self._indexes.get((fp, channel))
            if held is not None and held[0] == generation:
                return held[1]
            kind = "ivf" if count > self.approx_threshold else "exact"
            slug = sha256(f"{fp}\0{channel}".encode()).hexdigest()[:16]
            cache_dir = self.root / VECTORS_DIR
            path = cache_dir / f"{slug}-g{generation}-{kind}.faiss"
            index = vectors.read_index(path) if path.exists() else None
            if index is None or index.ntotal != count:
                ids, vecs = self._load_vectors(fp, channel, dim)
                previous = None
                if kind == "ivf":
                    older = sorted(cache_dir.glob(f"{slug}-g*-ivf.faiss"), key=_generation_of)
                    previous = vectors.read_index(older[-1]) if older else None  # its centroids may be reused
                index = vectors.build_index(ids, vecs, approx_threshold=self.approx_threshold, previous=previous)
                try:
                    vectors.write_index(index, path)
                except OSError:
                    pass  # read-only or full disk: searching still works from memory, the cache is only a speed-up
                else:
                    for stale in cache_dir.glob(f"{slug}-g*.faiss"):
                        if stale != path:
                            stale.unlink(missing_ok=True)
        self._indexes[(fp, channel)] = (generation, index)
        return index

    def _load_vectors(self, fp: str, channel: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        sql = (
            "SELECT m.id, m.vector FROM moments m JOIN videos v ON v.id = m.video_id "
            "WHERE v.fingerprint = ? AND m.channel = ? ORDER BY m.id"
        )
        with self._guard():
            rows = self._conn.execute(sql, (fp, channel)).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, self._decode([r[1] for r in rows], dim)

    def _decode(self, blobs: list[bytes], dim: int) -> np.ndarray:
        raw = b"".join(blobs)
        if len(raw) != len(blobs) * dim * _VECTOR_DTYPE.itemsize:
            raise schema.damaged(self.db_path, "a stored vector has the wrong length")
        # Not renormalised: exact search and the fp16 FAISS caches then score the very same stored values.
        return np.frombuffer(raw, dtype=_VECTOR_DTYPE).astype(np.float32).reshape(len(blobs), dim)

    def _hits(self, ids: np.ndarray, scores: np.ndarray, channel: str) -> list[Moment]:
        if len(ids) == 0:
            return []
        score_of = dict(zip(ids.tolist(), scores.tolist(), strict=True))
        rows: list[tuple] = []
        id_list = list(score_of)
        with self._guard():
            for i in range(0, len(id_list), 500):
                chunk = id_list[i : i + 500]
                rows += self._conn.execute(
                    "SELECT m.id, m.video_id, v.path, m.start_s, m.end_s FROM moments m JOIN videos v "
                    f"ON v.id = m.video_id WHERE m.id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
        # A moment deleted since the cache was read simply drops out.
        hits = [Moment(vid, Path(p), s, e, score_of[mid], channel) for mid, vid, p, s, e in rows]
        hits.sort(key=lambda h: (-h.score, h.video_id, h.start))
        return hits

    def _with_snippets(self, moments: list[Moment]) -> list[Moment]:
        out = []
        with self._guard():
            for m in moments:
                if m.text:
                    out.append(m)
                    continue
                lines = self._conn.execute(
                    "SELECT text FROM transcripts WHERE video_id = ? AND end_s > ? AND start_s < ? "
                    "AND source = ? ORDER BY start_s, id",
                    (m.video_id, m.start, m.end, SNIPPET_SOURCE.get(m.channel, "speech")),
                ).fetchall()
                joiner = "; " if SNIPPET_SOURCE.get(m.channel) == "sound" else " "  # sounds are separate sentences
                text = joiner.join(r[0].strip() for r in lines).strip()
                if len(text) > SNIPPET_CHARS:
                    text = text[: SNIPPET_CHARS - 1].rstrip() + "…"
                out.append(Moment(m.video_id, m.path, m.start, m.end, m.score, m.channel, m.steps, text))
        return out

    # ---- transcript search

    def text_search(self, query: str, k: int = 10, *, path_filter: str | None = None) -> list[Moment]:
        """Transcript lines matching any word of `query`, best first (channel "transcript").

        With FTS5: BM25 ranking (score = -bm25, higher is better), English stemming ("opens" finds "open").
        Without: the number of query words each line contains as whole words, case-insensitive.
        """
        words = [w for w in re.findall(r"\w+", query.lower()) if w]
        if not words or k <= 0:
            return []
        clause, args = _path_clause(path_filter) if path_filter else ("1", [])
        if not self._full_text:
            return self._scan_transcripts(set(words), k, clause, args)
        match = " OR ".join(f'"{w}"' for w in words)  # quoted: user text never becomes FTS syntax
        sql = (
            "SELECT t.video_id, v.path, t.start_s, t.end_s, -bm25(transcripts_fts), t.text, t.source "
            "FROM transcripts_fts JOIN transcripts t ON t.id = transcripts_fts.rowid "
            "JOIN videos v ON v.id = t.video_id WHERE transcripts_fts MATCH ? AND t.source IN ('speech', 'screen') "
            f"AND {clause} "
            "ORDER BY bm25(transcripts_fts), t.video_id, t.start_s LIMIT ?"
        )
        with self._guard():
            rows = self._conn.execute(sql, [match, *args, k]).fetchall()
        return [
            Moment(vid, Path(p), s, e, float(score), TEXT_CHANNELS[source], 1, text)
            for vid, p, s, e, score, text, source in rows
        ]

    def _scan_transcripts(self, words: set[str], k: int, clause: str, args: list) -> list[Moment]:
        """Without FTS5: read every line and count the query words it contains as whole words (slow, but exact)."""
        sql = (
            "SELECT t.video_id, v.path, t.start_s, t.end_s, t.text, t.source FROM transcripts t "
            f"JOIN videos v ON v.id = t.video_id WHERE t.source IN ('speech', 'screen') AND {clause}"
        )
        scored = []
        with self._guard():
            for vid, path, start, end, text, source in self._conn.execute(sql, args):
                score = len(words & set(re.findall(r"\w+", text.lower())))
                if score:
                    scored.append(Moment(vid, Path(path), start, end, float(score), TEXT_CHANNELS[source], 1, text))
        scored.sort(key=lambda m: (-m.score, m.video_id, m.start))
        return scored[:k]


# ------------------------------------------------------------------------------------------------------- writer


class Writer:
    """Changes to the library; exists only inside `Library.writer()`. Every method is one transaction."""

    def __init__(self, library: Library) -> None:
        self._lib = library
        self._closed = False

    def _conn_ready(self) -> None:
        if self._closed:
            raise RuntimeError("this Writer was used after its `with library.writer()` block ended")

    def lookup(self, path: Path | str, fingerprint: str) -> Lookup:
        """Decide what to do with a file, and do the cheap part at once.

        - "unchanged": stored with this model and the same content; nothing to do. Size and mtime equal to the
          stored ones skip hashing (microseconds; an mtime younger than 3 s is never trusted, see
          `_trusted_mtime`); otherwise the content key decides (and the new mtime is noted).
        - "moved": the same content with this model is stored under a path that no longer exists: the row now
          points here (recorded now, nothing to encode).
        - "copied": the same content is stored under a path that still exists: its moments and transcript are
          duplicated for this path (recorded now, nothing to encode).
        - "changed" (content or model differs from what is stored for this path) / "new": index it, then call
          `add_video(lookup.entry(...), ...)`.
        Raises OSError (e.g. FileNotFoundError) if the file cannot be read: record it with `record_failure`.
        """
        self._conn_ready()
        lib = self._lib
        path = _canonical(path)
        st = path.stat()
        seen = time.time_ns()
        mtime = _trusted_mtime(st.st_mtime_ns, seen)
        with lib._guard():
            row = lib._conn.execute(f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE path = ?", (str(path),)).fetchone()
        here = _video_row(row) if row else None

        def result(status: Status, key: str, **kw: object) -> Lookup:
            return Lookup(status, path, key, fingerprint, st.st_size, st.st_mtime_ns, seen, **kw)  # type: ignore[arg-type]

        if here and here.fingerprint == fingerprint and (here.size, here.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return result("unchanged", here.content_key, video_id=here.id)

        key = content_key(path)
        if here and here.content_key == key:
            if here.fingerprint == fingerprint:
                with lib._transaction() as conn:  # touched but not changed: remember the new mtime
                    conn.execute("UPDATE videos SET size = ?, mtime_ns = ? WHERE id = ?", (st.st_size, mtime, here.id))
                return result("unchanged", key, video_id=here.id)
            return result("changed", key, reason="model changed")

        with lib._guard():
            rows = lib._conn.execute(
                f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE content_key = ? AND fingerprint = ? AND path != ? "
                "ORDER BY indexed_at DESC",
                (key, fingerprint, str(path)),
            ).fetchall()
        twins = [_video_row(r) for r in rows]
        if twins:
            gone = [t for t in twins if not t.path.exists()]
            source = gone[0] if gone else twins[0]
            with lib._transaction() as conn:
                if here:
                    _delete_video(conn, here.id)
                if gone:
                    conn.execute(
                        "UPDATE videos SET path = ?, size = ?, mtime_ns = ? WHERE id = ?",
                        (str(path), st.st_size, mtime, source.id),
                    )
                    new_id = source.id
                else:
                    new_id = _copy_video(conn, source.id, path, st.st_size, mtime)
                conn.execute("DELETE FROM failures WHERE path = ?", (str(path),))
            status: Status = "moved" if gone else "copied"
            return result(status, key, video_id=new_id, previous_path=source.path)
        if here:
            reason = "content changed" if here.fingerprint == fingerprint else "content and model changed"
            return result("changed", key, reason=reason)
        return result("new", key)

    def add_video(
        self,
        entry: VideoEntry,
        moments: Moments | Sequence[Moments] = (),
        transcript: Iterable[TranscriptLine | tuple[float, float, str]] = (),
    ) -> int:
        """Store a video with all its moments (one `Moments` per channel) and transcript, in ONE transaction:
        after a crash the video is either fully there or absent. Replaces whatever was stored for its path.
        Returns the video id.
        """
        self._conn_ready()
        sets = [moments] if isinstance(moments, Moments) else list(moments)
        channels = [m.channel for m in sets]
        if len(set(channels)) != len(channels):
            raise ValueError(f"one Moments per channel, got channels {channels}")
        lines = [
            TranscriptLine(float(line[0]), float(line[1]), str(line[2]), *([str(line[3])] if len(line) > 3 else []))
            for line in transcript
        ]
        # Encode before the transaction: the write lock is held for as short a time as possible.
        encoded = []
        for m in sets:
            blobs = [row.tobytes() for row in vectors.normalise(m.vectors).astype(_VECTOR_DTYPE)]
            encoded.append((m, blobs))
        path = str(_canonical(entry.path))
        mtime = _trusted_mtime(int(entry.mtime_ns), entry.seen_ns if entry.seen_ns is not None else time.time_ns())
        n_total = sum(len(m) for m in sets)
        with self._lib._transaction() as conn:
            old = conn.execute("SELECT id FROM videos WHERE path = ?", (path,)).fetchone()
            if old:
                _delete_video(conn, old[0])
            for m, _ in encoded:
                if len(m):
                    _grow_set(conn, entry.fingerprint, m.channel, m.dim, len(m))
            video_id = conn.execute(
                "INSERT INTO videos (path, content_key, fingerprint, size, mtime_ns, duration, has_audio, n_moments,"
                " indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    path,
                    entry.content_key,
                    entry.fingerprint,
                    int(entry.size),
                    mtime,
                    float(entry.duration),
                    int(bool(entry.has_audio)),
                    n_total,
                    time.time(),
                ),
            ).lastrowid
            for m, blobs in encoded:
                conn.executemany(
                    "INSERT INTO moments (video_id, channel, start_s, end_s, vector) VALUES (?, ?, ?, ?, ?)",
                    zip(
                        [video_id] * len(m),
                        [m.channel] * len(m),
                        m.starts.tolist(),
                        m.ends.tolist(),
                        blobs,
                        strict=True,
                    ),
                )
            conn.executemany(
                "INSERT INTO transcripts (video_id, start_s, end_s, text, source) VALUES (?, ?, ?, ?, ?)",
                [(video_id, *line) for line in lines],
            )
            conn.execute("DELETE FROM failures WHERE path = ?", (path,))
        return int(video_id)

    def record_failure(self, path: Path | str, error: BaseException | str) -> None:
        """Remember that a file could not be indexed (one line), for the report and a retry on the next run."""
        self._conn_ready()
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        with self._lib._transaction() as conn:
            conn.execute(
                "INSERT INTO failures (path, error, attempts, last_attempt) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (path) DO UPDATE SET error = excluded.error, attempts = attempts + 1, "
                "last_attempt = excluded.last_attempt",
                (str(_canonical(path)), text, time.time()),
            )

    def remove(self, path: Path | str) -> bool:
        """Forget a file (its moments and transcript). Returns whether it was stored."""
        self._conn_ready()
        with self._lib._transaction() as conn:
            row = conn.execute("SELECT id FROM videos WHERE path = ?", (str(_canonical(path)),)).fetchone()
            if row:
                _delete_video(conn, row[0])
        return row is not None

    def remove_missing(self, under: Iterable[Path | str]) -> list[Path]:
        """Forget stored files below the given folders that no longer exist; returns their paths.

        Call it at the END of an index run over `under` (so files moved within them were already recognised by
        `lookup`), and only with folders that exist: an unplugged drive must not empty the library.
        """
        self._conn_ready()
        roots = [_canonical(p) for p in under]
        roots = [r for r in roots if r.exists()]

        def below(path: Path) -> bool:
            return any(path == r or r in path.parents for r in roots)

        removed = []
        for record in self._lib.videos():
            if below(record.path) and not record.path.exists():
                self.remove(record.path)
                removed.append(record.path)
        gone = [f.path for f in self._lib.failures() if below(f.path) and not f.path.exists()]
        with self._lib._transaction() as conn:  # failures of deleted files are no longer worth reporting
            conn.executemany("DELETE FROM failures WHERE path = ?", [(str(p),) for p in gone])
        return removed


# ---------------------------------------------------------------------------------------------------- internals


def _trusted_mtime(mtime_ns: int, seen_ns: int) -> int:
    """The mtime to store for the no-hash shortcut, or -1 ("hash it next time") when it is too recent to trust.

    File systems stamp mtimes with a coarse clock (a few ms on Linux, 2 s on FAT): a file modified again within
    the same tick after we read its mtime would keep that mtime and look unchanged. A file whose mtime is within
    RACY_WINDOW_NS of when we looked is therefore hashed on the next run (once; its then-older mtime is trusted).
    """
    return mtime_ns if mtime_ns < seen_ns - RACY_WINDOW_NS else -1


def _grow_set(conn: sqlite3.Connection, fp: str, channel: str, dim: int, n: int) -> None:
    row = conn.execute(
        "SELECT dim, count FROM vector_sets WHERE fingerprint = ? AND channel = ?", (fp, channel)
    ).fetchone()
    if row and row[1] > 0 and row[0] != dim:
        raise ValueError(f"model {fp!r} channel {channel!r} has {row[0]}-d vectors in the library, got {dim}-d")
    conn.execute(
        "INSERT INTO vector_sets (fingerprint, channel, dim, count, generation) VALUES (?, ?, ?, ?, 1) "
        "ON CONFLICT (fingerprint, channel) DO UPDATE SET dim = excluded.dim, count = count + excluded.count, "
        "generation = generation + 1",
        (fp, channel, dim, n),
    )


def _shrink_sets(conn: sqlite3.Connection, video_id: int) -> None:
    for fp, channel, n in conn.execute(
        "SELECT v.fingerprint, m.channel, count(*) FROM moments m JOIN videos v ON v.id = m.video_id "
        "WHERE m.video_id = ? GROUP BY m.channel",
        (video_id,),
    ).fetchall():
        conn.execute(
            "UPDATE vector_sets SET count = count - ?, generation = generation + 1 "
            "WHERE fingerprint = ? AND channel = ?",
            (n, fp, channel),
        )


def _delete_video(conn: sqlite3.Connection, video_id: int) -> None:
    _shrink_sets(conn, video_id)
    conn.execute("DELETE FROM transcripts WHERE video_id = ?", (video_id,))  # row by row: the FTS trigger sees each
    conn.execute("DELETE FROM moments WHERE video_id = ?", (video_id,))
    conn.execute("DELETE FROM videos WHERE id = ?", (video_id,))


def _copy_video(conn: sqlite3.Connection, source_id: int, path: Path, size: int, mtime_ns: int) -> int:
    new_id = conn.execute(
        "INSERT INTO videos (path, content_key, fingerprint, size, mtime_ns, duration, has_audio, n_moments, "
        "indexed_at) SELECT ?, content_key, fingerprint, ?, ?, duration, has_audio, n_moments, ? "
        "FROM videos WHERE id = ?",
        (str(path), size, mtime_ns, time.time(), source_id),
    ).lastrowid
    conn.execute(
        "INSERT INTO moments (video_id, channel, start_s, end_s, vector) "
        "SELECT ?, channel, start_s, end_s, vector FROM moments WHERE video_id = ? ORDER BY id",
        (new_id, source_id),
    )
    conn.execute(
        "INSERT INTO transcripts (video_id, start_s, end_s, text, source) "
        "SELECT ?, start_s, end_s, text, source FROM transcripts WHERE video_id = ? ORDER BY id",
        (new_id, source_id),
    )
    for fp, channel, dim_n in conn.execute(
        "SELECT v.fingerprint, m.channel, count(*) FROM moments m JOIN videos v ON v.id = m.video_id "
        "WHERE m.video_id = ? GROUP BY m.channel",
        (new_id,),
    ).fetchall():
        conn.execute(
            "UPDATE vector_sets SET count = count + ?, generation = generation + 1 "
            "WHERE fingerprint = ? AND channel = ?",
            (dim_n, fp, channel),
        )
    return int(new_id)


def _path_clause(path_filter: str) -> tuple[str, list]:
    """SQL over `v.path` for a prefix (folder or file) or a glob."""
    if any(ch in path_filter for ch in "*?["):
        pattern = os.path.expanduser(path_filter)
        if not pattern.startswith(("/", "*")):
            pattern = "*/" + pattern  # a relative glob matches anywhere below
        return "v.path GLOB ?", [pattern]
    prefix = str(_canonical(path_filter))
    folder = prefix.rstrip(os.sep) + os.sep
    return "(v.path = ? OR substr(v.path, 1, ?) = ?)", [prefix, len(folder), folder]


def _generation_of(cache_file: Path) -> int:
    match = re.search(r"-g(\d+)-", cache_file.name)
    return int(match.group(1)) if match else -1


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _remove_vector_caches(folder: Path) -> None:
    if folder.is_dir():
        for p in folder.iterdir():
            p.unlink(missing_ok=True)
