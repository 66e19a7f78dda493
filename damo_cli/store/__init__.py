"""The library store: what `damo index` writes and `damo search` reads (decode, encode, fuse, **store**, answer).

A library is a folder (default `damo_cli.paths.data_dir() / "library"`, so `$DAMO_HOME/data/library` in tests):

    library.db      SQLite, WAL mode: the single source of truth (videos, moments + vectors, transcripts, failures)
    library.lock    the writer lock (fcntl.flock); holds the writer's pid for the error message
    vectors/        FAISS indexes derived from library.db, rebuilt when stale; safe to delete at any time

Indexing (one process at a time; a second gets StoreError "another damo index is running on DIR (pid N)"):

    lib = Library.open()                             # StoreError if damaged / newer schema / not a library
    with lib.writer() as w:                          # exclusive lock + a quick_check of the file
        for path in files:
            try:
                look = w.lookup(path, fingerprint)   # "new" | "unchanged" | "moved" | "copied" | "changed"
                if look.needs_indexing:              # only "new" and "changed" need decoding and encoding
                    ...                              # decode, encode, fuse
                    w.add_video(look.entry(duration=d, has_audio=a),
                                moments=[Moments(starts, ends, fused, "fused"), Moments(starts, ends, zs, "bridge")],
                                transcript=[(0.0, 2.5, "hello"), ...])   # ONE transaction per video
            except (DamoError, OSError) as err:
                w.record_failure(path, err)          # listed by lib.failures(), retried next run
        w.remove_missing(roots)                      # last: forget deleted files below the scanned folders
    lib.refresh_vectors()                            # optional: build the FAISS caches now, not at the first search

Searching (no lock; works while an index runs, seeing every video committed so far):

    lib = Library.open(create=False)                 # StoreError "no library at ... yet" when there is none
    lib.search(query_vec, k=10, channel="fused", fingerprint=fp, path_filter="~/Videos/2023")  -> list[Moment]
    lib.text_search("open the door", k=10)           -> list[Moment] (transcript lines, channel "transcript")
    lib.stats()                                      -> LibraryStats (for `damo index --stats`)
    lib.failures()                                   -> list[Failure]

`damo index --rebuild PATH...`: `lib, aside = Library.quarantine_and_recreate()` moves `library.db` (and its
-wal/-shm) to `library-aside-YYYYmmdd-HHMMSS.db` (never deleted), drops the vector caches, creates an empty
library, then indexes PATH... as usual. It is the one fix for every "library is damaged" error. It works
without opening the damaged file, takes the writer lock (refused while an index runs), and wants any Library
this process holds on that folder closed first.

Guarantees:
- Keys: a video is stored per path with its content key (`content_key`, sampled sha256: see `keys.py`) and the
  model fingerprint. Same size+mtime -> "unchanged" without hashing; same key at a vanished path -> "moved"
  (only the path is updated); new content or another model -> "changed" (re-encode).
- Crashes: each video is one SQLite transaction, so a killed `damo index` (even SIGKILL) loses at most the
  video in flight; the next run finds the others "unchanged" and continues. A killed writer's lock is released
  by the kernel.
- Damage: a garbage header or a truncated file is reported by `Library.open` (cheap: no full read); damage
  inside by the writer's quick_check (~0.2 s per 100 MB; `Library.open(check=True)` runs it too) or by the
  first query that touches it. Always one line naming the rebuild command, never an SQLite traceback.
- Vectors are stored unit-normalised as float16 (384-d: 768 bytes per step); search is cosine. Exact search up
  to `approx_threshold` (50k) vectors per (model, channel), IVF above it; the FAISS caches keep fp16 too (see
  `vectors.py` for the choice and its measured recall). A cache is tagged with its set's generation counter,
  which every write to the set bumps in the same transaction, so a stale or broken cache is never used.
- Errors: StoreError (exit code 6) for what a user can act on; ValueError for API misuse (bad Moments,
  a vector dimension that differs from what the same model stored before).
- Moments: raw per-step hits are merged by `merge_hits` (rule in `moments.py`): a 1-s step grid that scores
  high at 12, 13 and 14 s comes back as one moment 12-15 s with the best score and its transcript snippet.
"""

from damo_cli.store.keys import content_key
from damo_cli.store.library import (
    Failure,
    Library,
    LibraryStats,
    Lookup,
    Moments,
    TranscriptLine,
    VideoEntry,
    VideoRecord,
    Writer,
)
from damo_cli.store.moments import Moment, merge_hits
from damo_cli.store.vectors import APPROX_THRESHOLD

__all__ = [
    "APPROX_THRESHOLD",
    "Failure",
    "Library",
    "LibraryStats",
    "Lookup",
    "Moment",
    "Moments",
    "TranscriptLine",
    "VideoEntry",
    "VideoRecord",
    "Writer",
    "content_key",
    "merge_hits",
]
