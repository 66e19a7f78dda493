"""The library store: content keys, lookups, atomic writes under SIGKILL, the writer lock across processes,
damage detection and rebuild, exact and approximate vector search, moment merging, transcript search, stats.

Everything here is synthetic (random vectors, small byte files): no media or models, ~30 s in all.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damo_cli.bench.store_vectors import clustered_vectors, recall_at, text_like_queries
from damo_cli.errors import StoreError
from damo_cli.store import Library, Moment, Moments, content_key, merge_hits
from damo_cli.store import library as library_module
from damo_cli.store import vectors as vectors_module
from damo_cli.store.keys import EDGE_BYTES, SAMPLE_BYTES, sample_offsets

REPO = Path(__file__).resolve().parents[1]
HOUR_AGO = time.time() - 3600


def make_file(path: Path, content: bytes, *, old: bool = True) -> Path:
    """Write a file; `old` dates it an hour back (a fresh mtime is never trusted by the no-hash shortcut)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if old:
        os.utime(path, (HOUR_AGO, HOUR_AGO))
    return path


def moments(n: int, dim: int = 8, *, channel: str = "fused", seed: int = 0, vecs: np.ndarray | None = None) -> Moments:
    rng = np.random.default_rng(seed)
    starts = np.arange(n, dtype=float)
    return Moments(starts, starts + 1, rng.standard_normal((n, dim)) if vecs is None else vecs, channel)


def index_file(w, path: Path, fp: str = "fp", *, sets=None, transcript=(), n: int = 5, seed: int = 0) -> int:
    look = w.lookup(path, fp)
    assert look.needs_indexing, look
    sets = sets if sets is not None else [moments(n, seed=seed)]
    return w.add_video(look.entry(duration=float(n), has_audio=True), sets, transcript)


def run_child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text, text
    return text


# ------------------------------------------------------------------------------------------------ content keys


def test_content_key_follows_content_not_path(tmp_path: Path) -> None:
    data = os.urandom(5000)
    a = make_file(tmp_path / "a.mp4", data)
    b = make_file(tmp_path / "sub" / "renamed.mov", data)
    assert content_key(a) == content_key(b)
    assert content_key(a).startswith("ck1:")
    for pos in (0, 2500, 4999):  # small file: every byte counts
        changed = bytearray(data)
        changed[pos] ^= 1
        assert content_key(make_file(tmp_path / "c.mp4", bytes(changed))) != content_key(a)
    assert content_key(make_file(tmp_path / "d.mp4", data + b"\0")) != content_key(a)


def test_content_key_of_a_large_file_reads_little_and_is_fast(tmp_path: Path) -> None:
    big = tmp_path / "two-hours.mp4"
    size = 3 * 1024**3  # a sparse 3 GiB file: hashing it fully would take seconds to minutes
    with open(big, "wb") as handle:
        handle.truncate(size)
    regions = sample_offsets(size)
    assert sum(length for _, length in regions) == 2 * EDGE_BYTES + 8 * SAMPLE_BYTES
    start = time.perf_counter()
    key = content_key(big)
    elapsed = time.perf_counter() - start
    print(f"content_key of a 3 GiB file: {elapsed * 1000:.1f} ms")
    assert elapsed < 0.5
    # Head, tail and every sample see a one-byte edit; the size sees a one-byte append.
    for offset, length in (regions[0], regions[-1], regions[4]):
        with open(big, "r+b") as handle:
            handle.seek(offset + length // 2)
            handle.write(b"\x01")
        assert content_key(big) != key
        with open(big, "r+b") as handle:
            handle.seek(offset + length // 2)
            handle.write(b"\x00")
        assert content_key(big) == key
    # The documented trade-off: a same-size edit between samples is not seen.
    gap = regions[1][0] + SAMPLE_BYTES + 1000
    assert gap < regions[2][0]
    with open(big, "r+b") as handle:
        handle.seek(gap)
        handle.write(b"\x01")
    assert content_key(big) == key


# ----------------------------------------------------------------------------------------------------- lookups


def test_lookup_lifecycle_new_unchanged_moved_copied_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[Path] = []
    real_key = library_module.content_key
    monkeypatch.setattr(library_module, "content_key", lambda p: hashed.append(Path(p)) or real_key(p))
    media = tmp_path / "media"
    clip = make_file(media / "clip.mp4", os.urandom(4000))
    lib = Library.open(tmp_path / "lib")
    with lib.writer() as w:
        assert w.lookup(clip, "fp").status == "new"
        vid = index_file(w, clip, transcript=[(0.0, 2.0, "hello")])

        hashed.clear()
        look = w.lookup(clip, "fp")
        assert (look.status, look.video_id, hashed) == ("unchanged", vid, [])  # stat shortcut: no hashing

        os.utime(clip, (HOUR_AGO + 60, HOUR_AGO + 60))  # touched, same bytes: hashed once, then trusted again
        assert w.lookup(clip, "fp").status == "unchanged"
        assert len(hashed) == 1
        assert w.lookup(clip, "fp").status == "unchanged"
        assert len(hashed) == 1

        moved = media / "2024" / "renamed.mp4"
        moved.parent.mkdir()
        os.rename(clip, moved)
        look = w.lookup(moved, "fp")
        assert (look.status, look.video_id, look.previous_path) == ("moved", vid, clip.resolve())
        assert not look.needs_indexing
        assert lib.video(clip) is None and lib.video(moved).id == vid
        assert len(lib.moments_of(vid)) == 5 and lib.transcript_of(vid)[0].text == "hello"

        copy = make_file(media / "backup" / "copy.mp4", moved.read_bytes())
        look = w.lookup(copy, "fp")
        assert look.status == "copied" and look.video_id != vid and look.previous_path == moved.resolve()
        assert len(lib.moments_of(look.video_id)) == 5 and lib.transcript_of(look.video_id)[0].text == "hello"
        assert lib.stats().videos == 2

        make_file(moved, os.urandom(4000))  # new content at the same path
        look = w.lookup(moved, "fp")
        assert (look.status, look.reason) == ("changed", "content changed")
        index_file(w, moved, seed=3)
        assert w.lookup(moved, "fp2").reason == "model changed"  # a new model re-indexes everything

    stats = lib.stats()
    assert (stats.videos, stats.moments, stats.transcript_lines) == (2, 10, 1)


def test_a_fresh_mtime_is_never_trusted(tmp_path: Path) -> None:
    """A file rewritten within the file system's timestamp tick keeps its mtime: such mtimes force a hash."""
    clip = make_file(tmp_path / "clip.mp4", b"a" * 1000, old=False)
    lib = Library.open(tmp_path / "lib")
    with lib.writer() as w:
        index_file(w, clip)
        stamp = os.stat(clip).st_mtime_ns
        clip.write_bytes(b"b" * 1000)  # same size
        os.utime(clip, ns=(stamp, stamp))  # and the same mtime, as a coarse clock would leave it
        assert w.lookup(clip, "fp").status == "changed"


def test_unchanged_files_are_recognised_in_well_under_a_millisecond_each(tmp_path: Path) -> None:
    lib = Library.open(tmp_path / "lib")
    files = [make_file(tmp_path / "media" / f"v{i}.mp4", os.urandom(64) + bytes([i])) for i in range(200)]
    with lib.writer() as w:
        for f in files:
            index_file(w, f, n=2)
        start = time.perf_counter()
        statuses = {w.lookup(f, "fp").status for f in files}
        per_file = (time.perf_counter() - start) / len(files)
    print(f"unchanged lookup: {per_file * 1e6:.0f} us per file")
    assert statuses == {"unchanged"}
    assert per_file < 0.005


def test_add_video_is_all_or_nothing(tmp_path: Path) -> None:
    lib = Library.open(tmp_path / "lib")
    a = make_file(tmp_path / "a.mp4", b"a" * 100)
    b = make_file(tmp_path / "b.mp4", b"b" * 100)
    with lib.writer() as w:
        index_file(w, a, sets=[moments(4, 8), moments(4, 8, channel="bridge")])
        before = lib.stats()
        look = w.lookup(b, "fp")
        # The fused set is written first, then the bridge set's dimension clash aborts the transaction.
        with pytest.raises(ValueError, match="16-d"):
            w.add_video(look.entry(duration=4, has_audio=False), [moments(4, 8), moments(4, 16, channel="bridge")])
        assert lib.video(b) is None
        after = lib.stats()
        assert (after.videos, after.moments, after.moments_by_channel) == (
            before.videos,
            before.moments,
            before.moments_by_channel,
        )
        w.add_video(look.entry(duration=4, has_audio=False), [moments(4, 8), moments(4, 8, channel="bridge")])
    assert lib.stats().moments == 16
    with pytest.raises(RuntimeError, match="after its"):
        w.record_failure(a, "late")


# ------------------------------------------------------------------------------------------- crashes and locks

ADD_LOOP = """
import sys
from pathlib import Path
import numpy as np
from damo_cli.store import Library, Moments

root, media = Path(sys.argv[1]), Path(sys.argv[2])
def n_of(i): return 1500 + (i * 37) % 1000
lib = Library.open(root)
# Announce each write transaction, so the parent can kill inside one.
lib._conn.set_trace_callback(lambda sql: sql.startswith("BEGIN IMMEDIATE") and print("txn", flush=True))
with lib.writer() as w:
    for i in range(100_000):
        path = media / f"v{i:05d}.bin"
        if not path.exists():
            path.write_bytes(i.to_bytes(4, "little") * 64)
        look = w.lookup(path, "fp")
        if not look.needs_indexing:
            continue
        n = n_of(i)
        rng = np.random.default_rng(i)
        starts = np.arange(n, dtype=float)
        sets = [Moments(starts, starts + 1, rng.standard_normal((n, 128)), ch) for ch in ("fused", "bridge")]
        print(f"begin {i}", flush=True)
        w.add_video(look.entry(duration=float(n), has_audio=True), sets,
                    [(float(j), float(j + 1), f"line {j} of video {i}") for j in range(n // 10)])
        print(f"done {i}", flush=True)
"""


def _n_of(i: int) -> int:
    return 1500 + (i * 37) % 1000


def _assert_library_consistent(root: Path) -> set[int]:
    """integrity_check ok and every stored video complete; returns the stored video numbers."""
    conn = sqlite3.connect(root / "library.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.execute("INSERT INTO transcripts_fts (transcripts_fts) VALUES ('integrity-check')")  # FTS matches rows
        stored = set()
        for vid, path, n_moments in conn.execute("SELECT id, path, n_moments FROM videos"):
            i = int(Path(path).stem[1:])
            per_channel = dict(
                conn.execute("SELECT channel, count(*) FROM moments WHERE video_id = ? GROUP BY channel", (vid,))
            )
            lines = conn.execute("SELECT count(*) FROM transcripts WHERE video_id = ?", (vid,)).fetchone()[0]
            assert per_channel == {"fused": _n_of(i), "bridge": _n_of(i)} and n_moments == 2 * _n_of(i), path
            assert lines == _n_of(i) // 10, path
            stored.add(i)
        for channel, count in conn.execute("SELECT channel, count FROM vector_sets"):
            assert count == conn.execute("SELECT count(*) FROM moments WHERE channel = ?", (channel,)).fetchone()[0]
    finally:
        conn.close()
    return stored


def test_sigkill_loses_at_most_the_video_in_flight_and_the_next_run_resumes(tmp_path: Path) -> None:
    root, media = tmp_path / "lib", tmp_path / "media"
    media.mkdir()
    rng = random.Random(1234)
    committed: set[int] = set()
    stored: set[int] = set()
    killed_inside = 0
    for _ in range(5):
        child = run_child(ADD_LOOP, str(root), str(media))
        # Follow the child: "begin i" (encoding), "txn" (its write transaction began), "done i" (committed).
        target, txns, first_begin, state = rng.randint(2, 5), 0, None, "idle"

        def follow(line: str) -> None:
            nonlocal txns, first_begin, state
            verb, _, number = line.partition(" ")
            if verb == "begin":
                first_begin = int(number) if first_begin is None else first_begin
                state = "encoding"
            elif verb == "txn" and state == "encoding":  # lookups' own small transactions are not counted
                txns, state = txns + 1, "writing"
            elif verb == "done":
                committed.add(int(number))
                state = "idle"

        while txns < target:
            line = child.stdout.readline().strip()
            assert line, child.stderr.read()
            follow(line)
        time.sleep(rng.uniform(0, 0.02))  # inside that video's transaction, or (rarely) just after it
        child.send_signal(signal.SIGKILL)
        for line in child.communicate()[0].splitlines():
            follow(line)
        killed_inside += state == "writing"
        # The run resumed where the previous one stopped: everything stored was found "unchanged".
        assert first_begin == min(set(range(len(stored) + 1)) - stored)
        stored = _assert_library_consistent(root)
        assert committed <= stored, "a committed video was lost"
        assert len(stored - committed) <= 1, "more than the video in flight appeared"
    print(f"5 SIGKILLs, {killed_inside} inside a write transaction; {len(stored)} videos stored, all complete")
    assert len(stored) >= 5 and killed_inside >= 1
    lib = Library.open(root)  # the killed writers' locks are gone, and the library is usable
    with lib.writer():
        pass
    assert lib.search(np.ones(128), k=3, channel="fused")


HOLD_LOCK = """
import sys
import time
from pathlib import Path
from damo_cli.errors import StoreError
from damo_cli.store import Library

root, go = Path(sys.argv[1]), Path(sys.argv[2])
lib = Library.open(root)
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
try:
    with lib.writer():
        print("got", flush=True)
        sys.stdin.readline()  # hold the lock until the parent says so (or kills us)
except StoreError as err:
    print(f"refused {err}", flush=True)
"""


def test_second_writer_gets_one_line_with_the_holders_pid_and_a_killed_holder_leaves_no_lock(tmp_path: Path) -> None:
    root = (tmp_path / "lib").resolve()
    go = tmp_path / "go"
    go.touch()
    holder = run_child(HOLD_LOCK, str(root), str(go))
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert holder.stdout.readline().strip() == "got"
        lib = Library.open(root)
        with pytest.raises(StoreError) as err, lib.writer():
            pass
        assert one_line(err.value) == f"another damo index is running on {root} (pid {holder.pid})"
        assert err.value.exit_code == 6
        # Readers need no lock: search and stats work while the index runs.
        reader = Library.open(root, create=False)
        assert reader.stats().videos == 0 and reader.search(np.ones(4)) == []
        with pytest.raises(StoreError, match="another damo index"):
            Library.quarantine_and_recreate(root)  # a rebuild must not pull the file from under a writer
        holder.send_signal(signal.SIGKILL)  # no cleanup code runs: the kernel must drop the flock
        holder.wait(timeout=10)
        with lib.writer():
            assert (root / "library.lock").read_text().strip() == str(os.getpid())
        assert (root / "library.lock").read_text() == ""  # a released lock names nobody
    finally:
        holder.kill()
        holder.communicate()


def test_two_racing_writers_one_wins(tmp_path: Path) -> None:
    root, go = tmp_path / "lib", tmp_path / "go"  # both create the library at once, too
    racers = [run_child(HOLD_LOCK, str(root), str(go)) for _ in range(2)]
    try:
        for r in racers:
            assert r.stdout.readline().strip() == "ready"
        go.touch()
        first = [r.stdout.readline().strip() for r in racers]
        assert sorted(line.split()[0] for line in first) == ["got", "refused"], first
        winner = racers[[line.startswith("got") for line in first].index(True)]
        assert f"(pid {winner.pid})" in next(line for line in first if line.startswith("refused"))
    finally:
        for r in racers:
            r.kill()
            r.communicate()


OPEN_AT_GO = """
import sys
import time
from pathlib import Path
from damo_cli.store import Library

root, go = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.0005)
print(Library.open(root).stats().videos, flush=True)
"""


@pytest.mark.parametrize("round_", range(3))  # a race: each round catches the old bug about a third of the time
def test_several_processes_creating_one_library_at_once_all_open_it(tmp_path: Path, round_: int) -> None:
    # Before the folder lock, such races could end in "busy" or "not a damo library" for a loser.
    root, go = tmp_path / "lib", tmp_path / "go"
    openers = [run_child(OPEN_AT_GO, str(root), str(go)) for _ in range(8)]
    try:
        for p in openers:
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        results = [p.communicate(timeout=60) for p in openers]
        assert [out.strip() for out, _ in results] == ["0"] * 8, [err[-300:] for _, err in results]
    finally:
        for p in openers:
            p.kill()


# ---------------------------------------------------------------------------------------- damage and rebuild


def _small_library(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    lib = Library.open(root)
    with lib.writer() as w:
        for i in range(20):
            f = make_file(tmp_path / "media" / f"v{i}.mp4", bytes([i]) * 100)
            index_file(w, f, sets=[moments(200, 64, seed=i)], transcript=[(0.0, 1.0, f"video {i}")])
    lib.close()  # checkpoints the WAL into library.db
    db = root / "library.db"
    assert db.stat().st_size > 200_000 and not Path(f"{db}-wal").exists()
    return root


@pytest.mark.parametrize("damage", ["garbage header", "garbage schema pages", "garbage mid-file", "truncated"])
def test_damaged_library_is_explained_in_one_line_and_rebuilt_with_one_command(tmp_path: Path, damage: str) -> None:
    root = _small_library(tmp_path)
    db = root / "library.db"
    size = db.stat().st_size
    rng = np.random.default_rng(7)
    with open(db, "r+b") as handle:
        if damage == "garbage header":
            handle.write(rng.bytes(4096))
        elif damage == "garbage schema pages":
            handle.seek(4096)  # the first tables' pages; sqlite_master's page 1 left intact
            handle.write(rng.bytes(16 * 4096))
        elif damage == "garbage mid-file":
            handle.seek(size // 2 // 4096 * 4096)  # moments' pages: only a full read can notice
            handle.write(rng.bytes(8 * 4096))
        else:
            handle.truncate(size // 2)
    damaged_bytes = db.read_bytes()

    def opened_and_checked() -> None:
        lib = Library.open(root)  # header damage and truncation are caught here, without reading the file
        with lib.writer():  # page damage by the writer's quick_check, before anything is added
            pass

    with pytest.raises(StoreError) as err:
        opened_and_checked()
    message = one_line(err.value)
    with pytest.raises(StoreError, match="is damaged"):
        Library.open(root, check=True)
    try:  # a reader (no quick_check) either works around the damage or says so in one line, never a traceback
        Library.open(root).search(np.ones(64), k=3)
    except StoreError as reader_err:
        assert "is damaged" in one_line(reader_err)
    assert "is damaged" in message and "damo index --rebuild PATH..." in message and str(db) in message
    print(f"{damage}: {message}")

    lib, aside = Library.quarantine_and_recreate(root)
    assert aside is not None and aside.parent == root and aside.name.startswith("library-aside-")
    assert aside.read_bytes() == damaged_bytes  # moved aside, never deleted
    assert lib.stats().videos == 0
    with lib.writer() as w:
        index_file(w, tmp_path / "media" / "v0.mp4")
    assert lib.stats().videos == 1
    # A second rebuild gets its own name.
    lib.close()
    _, aside2 = Library.quarantine_and_recreate(root)
    assert aside2 != aside and aside.exists() and aside2.exists()


def test_newer_schema_and_foreign_files_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    Library.open(root).close()
    conn = sqlite3.connect(root / "library.db")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as err:
        Library.open(root)
    assert "newer damo (schema v99" in one_line(err.value)
    conn = sqlite3.connect(root / "library.db")
    conn.execute("UPDATE meta SET value = 'v2?' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="damaged .unknown schema version 'v2\\?'"):
        Library.open(root)

    other = tmp_path / "other"
    other.mkdir()
    conn = sqlite3.connect(other / "library.db")
    conn.execute("CREATE TABLE photos (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a damo library"):
        Library.open(other)
    with pytest.raises(StoreError, match="no library at .* yet"):
        Library.open(tmp_path / "nothing", create=False)


def test_default_root_follows_damo_home(fresh_home: Path) -> None:
    lib = Library.open()
    assert lib.root == (fresh_home / "data" / "library").resolve()
    assert lib.db_path.exists()


# ------------------------------------------------------------------------------------------------------ search


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def test_exact_search_ranks_like_brute_force_and_filters_by_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lib = Library.open(tmp_path / "lib")
    data = {}
    with lib.writer() as w:
        for folder in ("holiday", "work"):
            for i in range(5):
                f = make_file(tmp_path / "media" / folder / f"{folder}{i}.mp4", f"{folder}{i}".encode() * 50)
                vecs = rng.standard_normal((30, 16))
                data[f.resolve()] = _unit(vecs)
                index_file(w, f, sets=[moments(30, 16, vecs=vecs), moments(30, 16, channel="bridge", seed=i)])
    query = rng.standard_normal(16)
    raw = lib.search(query, k=10, merge=False)
    # brute force over every stored step (float16 storage: compare with a tolerance)
    flat = [(float(v @ _unit(query)), p, s) for p, vs in data.items() for s, v in enumerate(vs)]
    flat.sort(reverse=True)
    assert [(h.path, h.start) for h in raw] == [(p, float(s)) for _, p, s in flat[:10]]
    assert all(abs(h.score - sc) < 2e-3 for h, (sc, _, _) in zip(raw, flat, strict=False))
    assert all(h.channel == "fused" and h.end == h.start + 1 for h in raw)

    holiday = lib.search(query, k=5, path_filter=str(tmp_path / "media" / "holiday"))
    assert holiday and all("holiday" in h.path.name for h in holiday)
    assert all(h.path.name == "work3.mp4" for h in lib.search(query, k=5, path_filter="*/work3.mp4"))
    assert all(h.path.parent.name == "work" for h in lib.search(query, k=5, path_filter="work/*"))
    assert lib.search(query, k=5, path_filter=str(tmp_path / "nowhere")) == []
    assert all(h.channel == "bridge" for h in lib.search(query, k=3, channel="bridge"))
    assert lib.search(query, k=3, channel="audio") == []
    with pytest.raises(ValueError, match="dimensions"):
        lib.search(np.ones(5))


def test_search_needs_a_fingerprint_when_two_models_share_a_channel(tmp_path: Path) -> None:
    lib = Library.open(tmp_path / "lib")
    with lib.writer() as w:
        index_file(w, make_file(tmp_path / "a.mp4", b"a" * 10), "model-a")
        index_file(w, make_file(tmp_path / "b.mp4", b"b" * 10), "model-b")
    with pytest.raises(StoreError, match="2 models"):
        lib.search(np.ones(8))
    hits = lib.search(np.ones(8), fingerprint="model-b", merge=False)
    assert {h.path.name for h in hits} == {"b.mp4"}


def test_search_merges_consecutive_steps_into_a_moment_with_its_transcript(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    query = _unit(rng.standard_normal(32))
    vecs = _unit(rng.standard_normal((60, 32))) * 0.3
    vecs[12:15] = query + 0.02 * rng.standard_normal((3, 32))  # the door opens at 12-15 s
    lib = Library.open(tmp_path / "lib")
    with lib.writer() as w:
        index_file(
            w,
            make_file(tmp_path / "door.mp4", b"door" * 100),
            sets=[moments(60, 32, vecs=vecs)],
            transcript=[(11.5, 13.0, "Here it comes."), (13.0, 16.0, "Someone opens the door!"), (40, 41, "bye")],
        )
    best = lib.search(query, k=3)[0]
    assert (best.start, best.end, best.steps) == (12.0, 15.0, 3)
    assert best.score > 0.99
    assert best.text == "Here it comes. Someone opens the door!"


def test_vector_cache_is_derived_tagged_and_rebuilt_when_stale_or_broken(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    lib = Library.open(root)
    with lib.writer() as w:
        index_file(w, make_file(tmp_path / "a.mp4", b"a" * 10), n=20)
    query = np.ones(8)
    first = lib.search(query, k=3, merge=False)
    caches = sorted((root / "vectors").glob("*.faiss"))
    assert len(caches) == 1 and "-g1-exact" in caches[0].name

    caches[0].write_bytes(b"garbage")  # a broken cache is rebuilt, not reported
    assert Library.open(root).search(query, k=3, merge=False) == first
    with lib.writer() as w:
        index_file(w, make_file(tmp_path / "b.mp4", b"b" * 10), n=20, seed=5)
    assert len(lib.search(query, k=100, merge=False)) == 40  # stale cache noticed, in memory and on disk
    assert [p.name.split("-")[1] for p in (root / "vectors").glob("*.faiss")] == ["g2"]
    with lib.writer() as w:
        w.remove(tmp_path / "b.mp4")
    assert len(Library.open(root).search(query, k=100, merge=False)) == 20
    assert lib.refresh_vectors() == {"fp/fused": "exact"}


def test_ivf_recall_at_10_against_exact_on_clustered_vectors() -> None:
    data, topics = clustered_vectors(20_000, 128, steps_per_video=200, seed=3)
    data = data.astype(np.float16).astype(np.float32)  # the store's precision, so "exact" is exact over the same values
    queries = text_like_queries(topics, 200, seed=4)
    ids = np.arange(len(data), dtype=np.int64) * 3 + 7  # arbitrary ids survive the index
    exact = vectors_module.build_index(ids, data, approx_threshold=len(data))
    start = time.perf_counter()
    ivf = vectors_module.build_index(ids, data, approx_threshold=1000)
    build_s = time.perf_counter() - start
    assert (vectors_module.index_kind(exact), vectors_module.index_kind(ivf)) == ("exact", "ivf")
    _, truth = exact.search(queries, 10)
    _, found = ivf.search(queries, 10)
    recall = recall_at(truth, found, 10)
    import faiss

    one_probe = faiss.extract_index_ivf(ivf)
    nlist, nprobe = one_probe.nlist, one_probe.nprobe
    one_probe.nprobe = 1
    _, rough = ivf.search(queries, 10)
    rough_recall = recall_at(truth, rough, 10)
    print(
        f"IVF nlist={nlist} nprobe={nprobe}: recall@10 {recall:.3f} (nprobe=1: {rough_recall:.3f}), "
        f"build {build_s:.2f} s"
    )
    assert recall >= 0.9
    assert rough_recall < recall  # the data is hard enough for probing to matter

    # The centroids of a previous index are reused while the size stays within 2x.
    one_probe.nprobe = nprobe
    again = vectors_module.build_index(ids[:15_000], data[:15_000], approx_threshold=1000, previous=ivf)
    assert faiss.extract_index_ivf(again).nlist == nlist and again.ntotal == 15_000


def test_library_switches_to_ivf_past_its_threshold(tmp_path: Path) -> None:
    data, topics = clustered_vectors(6000, 32, steps_per_video=300, seed=5)
    lib = Library.open(tmp_path / "lib", approx_threshold=2000)
    with lib.writer() as w:
        for i in range(20):
            f = make_file(tmp_path / "media" / f"v{i}.mp4", bytes([i]) * 64)
            index_file(w, f, sets=[moments(300, 32, vecs=data[i * 300 : (i + 1) * 300])])
    assert lib.refresh_vectors() == {"fp/fused": "ivf"}
    assert lib.stats().vector_indexes == {"fp/fused": "ivf"}
    exact = Library.open(tmp_path / "lib", approx_threshold=10**9)
    agree = []
    for q in text_like_queries(topics, 20, seed=6):
        a = [(h.path, h.start) for h in lib.search(q, k=10, merge=False)]
        b = [(h.path, h.start) for h in exact.search(q, k=10, merge=False)]
        agree.append(len(set(a) & set(b)) / 10)
    assert np.mean(agree) >= 0.9
    # A filter over many candidates goes through the IVF index with a selector.
    lib.approx_threshold = 1000
    hits = lib.search(text_like_queries(topics, 1, seed=8)[0], k=5, path_filter="*/v1*.mp4", merge=False)
    assert hits and all(h.path.name.startswith("v1") for h in hits)


# ----------------------------------------------------------------------------------------------------- merging


def hit(start: float, score: float, video: int = 1, channel: str = "fused", step: float = 1.0) -> Moment:
    return Moment(video, Path(f"/v{video}.mp4"), start, start + step, score, channel)


def test_merge_three_consecutive_steps_into_one_moment_and_split_at_a_gap() -> None:
    moments_ = merge_hits([hit(11, 0.82), hit(10, 0.80), hit(12, 0.79), hit(15, 0.81)])
    assert [(m.start, m.end, m.score, m.steps) for m in moments_] == [(10, 13, 0.82, 3), (15, 16, 0.81, 1)]


def test_merge_drops_weak_edges_splits_at_dips_and_keeps_weaker_events() -> None:
    edges = merge_hits([hit(0, 0.60), hit(1, 0.80), hit(2, 0.82), hit(3, 0.60)])
    assert [(m.start, m.end) for m in edges] == [(1, 3)]
    assert [
        (m.start, m.end) for m in merge_hits([hit(0, 0.6), hit(1, 0.8), hit(2, 0.82), hit(3, 0.6)], threshold=0.55)
    ] == [(0, 4)]
    dip = merge_hits([hit(0, 0.8), hit(1, 0.5), hit(2, 0.79)])
    assert [(m.start, m.end) for m in dip] == [(0, 1), (2, 3)]
    weaker_event = merge_hits([hit(0, 0.9), hit(1, 0.88), hit(30, 0.5), hit(31, 0.52)])
    assert [(m.start, m.end, m.score) for m in weaker_event] == [(0, 2, 0.9), (30, 32, 0.52)]
    others = merge_hits([hit(0, 0.8), hit(1, 0.8, video=2), hit(1, 0.8, channel="bridge")])
    assert len(others) == 3


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.floats(0, 1), st.integers(1, 2)),
        min_size=1,
        max_size=40,
        unique_by=lambda t: (t[0], t[2]),
    )
)
def test_merge_properties(raw: list[tuple[int, float, int]]) -> None:
    hits = [hit(float(s), score, video=v) for s, score, v in raw]
    merged = merge_hits(hits)
    assert [m.score for m in merged] == sorted((m.score for m in merged), reverse=True)
    for video in {1, 2}:
        spans = sorted((m.start, m.end) for m in merged if m.video_id == video)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # moments never overlap
    for m in merged:  # a moment's score is the best of the steps it covers, its steps are all covered
        inside = [h for h in hits if h.video_id == m.video_id and m.start <= h.start and h.end <= m.end]
        assert m.score == max(h.score for h in inside) and m.steps <= len(inside)
    best = max(hits, key=lambda h: h.score)
    assert merged[0].score == best.score  # the best step always survives


# ------------------------------------------------------------------------------------------------- transcripts


@pytest.mark.parametrize("full_text", [True, False])
def test_text_search_finds_transcript_lines(tmp_path: Path, full_text: bool) -> None:
    lib = Library.open(tmp_path / "lib")
    assert lib._full_text  # this Python's SQLite has FTS5; the fallback is exercised by switching it off
    with lib.writer() as w:
        index_file(
            w,
            make_file(tmp_path / "a" / "a.mp4", b"a" * 10),
            transcript=[(0, 2, "The dog jumps over the fence."), (2, 4, "Someone opens the door.")],
        )
        index_file(w, make_file(tmp_path / "b" / "b.mp4", b"b" * 10), transcript=[(5, 7, "Close the window, please")])
    lib._full_text = full_text
    hits = lib.text_search("open door" if full_text else "door", k=5)
    assert hits[0].text == "Someone opens the door." and (hits[0].start, hits[0].end) == (2, 4)
    assert hits[0].channel == "transcript" and hits[0].path.name == "a.mp4"
    assert lib.text_search('"window" OR (NEAR', k=5)[0].path.name == "b.mp4"  # user text is never FTS syntax
    assert lib.text_search("window", k=5, path_filter=str(tmp_path / "a")) == []
    assert lib.text_search("...", k=5) == []


# ------------------------------------------------------------------------------------------ stats and failures


def test_stats_failures_and_removing_missing_files(tmp_path: Path) -> None:
    lib = Library.open(tmp_path / "lib")
    media = tmp_path / "media"
    with lib.writer() as w:
        a = make_file(media / "a.mp4", b"a" * 10)
        b = make_file(media / "b.mp4", b"b" * 10)
        index_file(w, a, n=4, transcript=[(0, 1, "hi")])
        index_file(w, b, n=6, sets=[moments(6), moments(6, channel="bridge")])
        broken = make_file(media / "broken.mp4", b"x")
        w.record_failure(broken, ValueError("not a video: no streams\nsecond line"))
        w.record_failure(broken, "still not a video")
    stats = lib.stats()
    assert (stats.videos, stats.moments, stats.transcript_lines, stats.total_duration_s) == (2, 16, 1, 10.0)
    assert stats.moments_by_channel == {"fused": 10, "bridge": 6}
    assert stats.fingerprints == {"fp": 2} and stats.failures == 1 and stats.schema_version == 2
    assert stats.size_bytes > 0 and stats.last_indexed is not None and stats.full_text
    [failure] = lib.failures()
    assert (failure.path, failure.error, failure.attempts) == (broken.resolve(), "still not a video", 2)

    with lib.writer() as w:
        index_file(w, broken)  # indexed after all: its failure is forgotten
        assert lib.failures() == []
        gone = make_file(media / "gone.mp4", b"g")
        w.record_failure(gone, "unreadable")
        b.unlink()
        gone.unlink()
        assert w.remove_missing([tmp_path / "unplugged-drive"]) == []  # an absent root removes nothing
        assert len(lib.failures()) == 1
        assert w.remove_missing([media]) == [b.resolve()]
    assert lib.stats().videos == 2 and lib.stats().moments_by_channel == {"fused": 9}
    assert lib.failures() == []  # the failure of a deleted file is dropped too
