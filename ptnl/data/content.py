"""What image files hold: per-file content digests, cached by stat as build tools cache them.

A run's numbers depend on the pixels, not on the paths that name them, so run ids and the
feature cache key on content (``ptnl.data.disk.identity``, ``ptnl.train.features``): a second data
root with the same split file but other images is another run and is encoded anew, while the same
files moved or copied elsewhere keep their runs and their cached features.

Hashing every byte of ImageNet on every call would cost minutes, so each file's sha256 is kept in
a small SQLite table under ``cache_dir()/file-digests.sqlite``, keyed by the file's absolute path
and its (size, mtime_ns, ctime_ns, inode): a file is read again only when its stat changes (an
edit, a replacement, a copy), and a stat is all an unchanged file costs. A change the stat does
not show (bytes rewritten in place with the old times restored by hand) is not seen; nothing
else is. ``PTNL_CACHE`` redirects the table with the rest of the cache.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence

from ptnl.core.paths import cache_dir

DB_NAME = "file-digests.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
    "ctime_ns INTEGER, ino INTEGER, sha256 TEXT)"
)
_MEMO: dict[str, tuple[tuple, str]] = {}  # this process: path -> (stat key, digest)
_LOCK = threading.Lock()


def _stat_key(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _connect() -> sqlite3.Connection:
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(d / DB_NAME, timeout=60)
    con.execute("PRAGMA journal_mode=WAL")  # concurrent workers read while one writes
    con.execute(_SCHEMA)
    return con


def file_digests(files: Sequence[str]) -> list[str]:
    """The sha256 (hex) of each file, read only where the stat cache has no entry for its stat.
    Raises FileNotFoundError for a missing file (``check_images`` names them first)."""
    paths = [os.path.abspath(p) for p in files]
    keys = [_stat_key(p) for p in paths]
    out: list[str | None] = [None] * len(paths)
    todo = []
    with _LOCK:
        for i, (p, k) in enumerate(zip(paths, keys)):
            hit = _MEMO.get(p)
            if hit is not None and hit[0] == k:
                out[i] = hit[1]
            else:
                todo.append(i)
    if not todo:
        return out  # type: ignore[return-value]
    con = _connect()
    try:
        stored = {}
        want = [paths[i] for i in todo]
        for start in range(0, len(want), 900):  # SQLite's bound-parameter limit
            chunk = want[start : start + 900]
            q = f"SELECT path, size, mtime_ns, ctime_ns, ino, sha256 FROM digests WHERE path IN ({','.join('?' * len(chunk))})"
            for row in con.execute(q, chunk):
                stored[row[0]] = (tuple(row[1:5]), row[5])
        fresh = []
        for i in todo:
            p, k = paths[i], keys[i]
            hit = stored.get(p)
            if hit is not None and hit[0] == k:
                out[i] = hit[1]
            else:
                out[i] = _sha256(p)
                fresh.append((p, *k, out[i]))
        if fresh:
            with con:
                con.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?)", fresh)
    finally:
        con.close()
    with _LOCK:
        for i in todo:
            _MEMO[paths[i]] = (keys[i], out[i])
    return out  # type: ignore[return-value]


def digest_of_digests(digests: Iterable[str]) -> str:
    """One hex sha256 over an ordered sequence of digests."""
    h = hashlib.sha256()
    for d in digests:
        h.update(d.encode())
        h.update(b"\n")
    return h.hexdigest()
