"""The SQLite schema of the library, its version, and opening a database file safely.

One file, `library.db`, in WAL mode (readers never wait for the writer, a crash never tears a transaction).
Times are seconds (REAL); vectors are little-endian float16 blobs of unit vectors, `dim` of them per row, with
`dim` recorded once per (model fingerprint, channel) in `vector_sets`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from damo_cli.errors import StoreError

SCHEMA_VERSION = 2  # 2: transcripts.source ("speech" or "screen": on-screen text read by OCR)
APPLICATION_ID = 0x64616D6F  # "damo": tells a damo library from any other SQLite file
DB_NAME = "library.db"
REBUILD_HINT = "damo index --rebuild PATH..."

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per indexed file path. A row exists only once all of its moments and transcript are stored
-- (they are written in the same transaction), so there is no 'in progress' state to clean up after a crash.
CREATE TABLE IF NOT EXISTS videos (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    path        TEXT NOT NULL UNIQUE,
    content_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,      -- the model that produced the vectors
    size        INTEGER NOT NULL,   -- bytes, and mtime in ns: the no-hash shortcut for unchanged files
    mtime_ns    INTEGER NOT NULL,
    duration    REAL NOT NULL,
    has_audio   INTEGER NOT NULL,
    n_moments   INTEGER NOT NULL,   -- as written; lets a checker prove a video is complete
    indexed_at  REAL NOT NULL       -- unix time
);
CREATE INDEX IF NOT EXISTS videos_by_key ON videos (content_key, fingerprint);
-- Moment ids are AUTOINCREMENT (never reused): FAISS caches map ids back here safely.
CREATE TABLE IF NOT EXISTS moments (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id INTEGER NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    channel  TEXT NOT NULL,         -- which vectors: 'fused' (the model), 'bridge' (zero-shot), ...
    start_s  REAL NOT NULL,
    end_s    REAL NOT NULL,
    vector   BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS moments_by_video ON moments (video_id, channel, start_s);
CREATE INDEX IF NOT EXISTS moments_by_channel ON moments (channel);
-- Bumped in the transaction that adds or removes vectors of a set: the FAISS cache is tagged with it.
CREATE TABLE IF NOT EXISTS vector_sets (
    fingerprint TEXT NOT NULL,
    channel     TEXT NOT NULL,
    dim         INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, channel)
);
CREATE TABLE IF NOT EXISTS transcripts (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id INTEGER NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    start_s  REAL NOT NULL,
    end_s    REAL NOT NULL,
    text     TEXT NOT NULL,
    source   TEXT NOT NULL DEFAULT 'speech'  -- 'speech' (said) or 'screen' (written on screen)
);
CREATE INDEX IF NOT EXISTS transcripts_by_video ON transcripts (video_id, start_s);
-- Files that could not be indexed: reported by `damo index`, retried on the next run.
CREATE TABLE IF NOT EXISTS failures (
    path         TEXT PRIMARY KEY,
    error        TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    last_attempt REAL NOT NULL
);
"""

# External-content FTS5 over transcripts.text, kept in step by triggers (so every writer path updates it).
_FTS = """
CREATE VIRTUAL TABLE IF NOT EXISTS transcripts_fts USING fts5 (
    text, content='transcripts', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS transcripts_fts_insert AFTER INSERT ON transcripts BEGIN
    INSERT INTO transcripts_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS transcripts_fts_delete AFTER DELETE ON transcripts BEGIN
    INSERT INTO transcripts_fts (transcripts_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""


def fts5_available() -> bool:
    """Whether this Python's SQLite was built with FTS5 (most are; some minimal builds are not)."""
    try:
        conn = sqlite3.connect(":memory:")
        try:
            conn.execute("CREATE VIRTUAL TABLE probe USING fts5 (x)")
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return False
    return True


def damaged(db: Path, detail: object) -> StoreError:
    """The one-line error for a damaged library file."""
    text = str(detail).strip().splitlines()[0] if str(detail).strip() else "unreadable"
    return StoreError(f"the library {db} is damaged ({text}); move it aside and start afresh with: {REBUILD_HINT}")


def as_store_error(db: Path, exc: sqlite3.Error) -> StoreError:
    """Translate an SQLite error into the one line a user can act on."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in str(exc) or "not a database" in str(exc):
        return damaged(db, exc)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreError(f"the library {db} is busy (another process holds it); try again")
    if name.startswith("SQLITE_FULL"):
        return StoreError(f"no space left to write the library {db}")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        return StoreError(f"cannot write the library {db} ({exc}); check its folder's permissions")
    return StoreError(f"library {db}: {exc}")


def check_file(db: Path) -> None:
    """Cheap checks before SQLite sees the file: its header is SQLite's and the file is as long as it says.

    Catches garbage over the header and truncation (a partial copy, a full disk) without reading the file; damage
    inside is found by `PRAGMA quick_check` (the writer runs it) or by the first query that touches it.
    """
    try:
        with open(db, "rb") as handle:
            header = handle.read(100)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise StoreError(f"cannot read the library {db}: {exc.strerror or exc}") from None
    if size == 0:
        return  # a new library: SQLite writes the header on first use
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise damaged(db, "not an SQLite database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counter_valid = header[24:28] == header[92:96]  # the in-header size is trustworthy only then (SQLite docs)
    wal = Path(f"{db}-wal")
    # With a WAL present, a crash mid-checkpoint can leave the file legitimately shorter than its (already
    # rewritten) header says, the missing pages still in the WAL: leave that case to SQLite and quick_check.
    wal_pending = wal.exists() and wal.stat().st_size > 0
    if counter_valid and pages and size < pages * page_size and not wal_pending:
        raise damaged(db, f"truncated: {size} of {pages * page_size} bytes")


def connect(db: Path, *, busy_timeout_s: float = 10.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, foreign keys on."""
    conn = sqlite3.connect(db, timeout=busy_timeout_s, isolation_level=None, check_same_thread=True)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        # NORMAL is the documented WAL setting: a process crash loses nothing committed; a power cut can lose
        # the last commits (those videos are indexed again) but never corrupts the file.
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def initialise_or_check(conn: sqlite3.Connection, db: Path) -> bool:
    """Create the schema in a new (empty) file, or check an existing one is a damo library we can read.

    Returns whether the library has the transcript full-text index. Raises StoreError otherwise.
    """
    # Reading the header first: a garbage file fails here with SQLITE_NOTADB.
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return _create(conn)
    if app_id != APPLICATION_ID or "meta" not in tables:
        raise StoreError(f"{db} is an SQLite file but not a damo library; point damo at another folder")
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    raw_version = meta.get("schema_version", "")
    if not raw_version.isdigit():
        raise damaged(db, f"unknown schema version {raw_version!r}")
    version = int(raw_version)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the library {db} was written by a newer damo (schema v{version}; this damo reads v{SCHEMA_VERSION}):"
            f" upgrade damo, or start a new library with: {REBUILD_HINT}"
        )
    if version < 1:
        raise damaged(db, f"unknown schema version {raw_version!r}")
    if version < SCHEMA_VERSION:
        _upgrade(conn, version)
    has_fts = meta.get("fts") == "1"
    if has_fts and not fts5_available():
        raise StoreError(f"the library {db} uses SQLite FTS5, which this Python's sqlite3 lacks; use another Python")
    return has_fts


def _create(conn: sqlite3.Connection) -> bool:
    # WAL is a property of the file; setting it needs no transaction. Two processes creating the same library
    # at once serialise on BEGIN IMMEDIATE and the IF NOT EXISTS clauses make the loser's DDL a no-op.
    conn.execute("PRAGMA journal_mode = WAL")
    has_fts = fts5_available()
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _split(_TABLES + (_FTS if has_fts else "")):
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        rows = [
            ("schema_version", str(SCHEMA_VERSION)),
            ("created_at", str(time.time())),
            ("fts", "1" if has_fts else "0"),
        ]
        conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", rows)
        has_fts = conn.execute("SELECT value FROM meta WHERE key = 'fts'").fetchone()[0] == "1"
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return has_fts


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Bring an older library up to SCHEMA_VERSION in one transaction (nothing stored is lost or re-encoded)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        if current < 2:  # another process may have upgraded it while we waited for the lock
            conn.execute("ALTER TABLE transcripts ADD COLUMN source TEXT NOT NULL DEFAULT 'speech'")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _split(script: str) -> list[str]:
    """Statements of a script (triggers keep their inner `;` until their END)."""
    statements, current = [], []
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        current.append(line)
        joined = "\n".join(current)
        if sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    return statements
