"""SQLite persistence of the fake ECS: instances, disks, attachments, idempotency tokens,
tasks, used signature nonces and the audit log.

WAL mode, one connection, one writer at a time. Each API call runs in one transaction
that also writes its audit row, and commits before the answer is sent: a ``kill -9``
loses no acknowledged change, and never leaves a change without its audit row (WAL
survives a process crash at ``synchronous=NORMAL``; only a power loss could drop the
last commits, which a test double need not survive).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    zone        TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    created     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS disks (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    disk_id           TEXT NOT NULL UNIQUE,
    zone              TEXT NOT NULL,
    name              TEXT NOT NULL,
    description       TEXT NOT NULL,
    category          TEXT NOT NULL,
    performance_level TEXT,
    size              INTEGER NOT NULL,
    encrypted         INTEGER NOT NULL,
    kms_key_id        TEXT,
    multi_attach      INTEGER NOT NULL,
    -- released with the instance it is attached to (AttachDisk's DeleteWithInstance)
    delete_with_instance INTEGER NOT NULL DEFAULT 0,
    created           REAL NOT NULL,
    ready_at          REAL NOT NULL,
    tags              TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attachments (
    disk_id     TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('attaching', 'attached', 'detaching')),
    settle_at   REAL NOT NULL,
    attached_at REAL NOT NULL,
    device      TEXT NOT NULL,
    PRIMARY KEY (disk_id, instance_id)
);
CREATE INDEX IF NOT EXISTS attachments_by_instance ON attachments (instance_id);
CREATE TABLE IF NOT EXISTS client_tokens (
    token       TEXT PRIMARY KEY,
    action      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    result      TEXT NOT NULL
);
-- tasks of asynchronous actions (ModifyDiskSpec), for DescribeTasks
CREATE TABLE IF NOT EXISTS tasks (
    task_id     TEXT PRIMARY KEY,
    action      TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    status      TEXT NOT NULL,
    created     REAL NOT NULL,
    finished    REAL
);
-- signature nonces already used, until they expire (a replay must fail after a restart too)
CREATE TABLE IF NOT EXISTS nonces (
    access_key_id TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    expires       REAL NOT NULL,
    PRIMARY KEY (access_key_id, nonce)
);
CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expires);
CREATE TABLE IF NOT EXISTS audit (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at            REAL NOT NULL,
    request_id    TEXT NOT NULL,
    action        TEXT NOT NULL,
    params        TEXT NOT NULL,
    code          TEXT NOT NULL,
    status        INTEGER NOT NULL,
    disk_id       TEXT,
    disk_zone     TEXT,
    instance_id   TEXT,
    instance_zone TEXT,
    style         TEXT NOT NULL
);
"""


class Store:
    def __init__(self, path: Path | str = ":memory:"):
        self.path = str(path)
        self._lock = threading.RLock()
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time; commit on success, roll back on any exception."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo just the enclosed changes on error (the audit row written after stays)."""
        self.db.execute("SAVEPOINT action")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK TO action")
            self.db.execute("RELEASE action")
            raise
        self.db.execute("RELEASE action")

    def use_nonce(self, access_key_id: str, nonce: str, now: float, ttl: float) -> bool:
        """Record a signature nonce; False if it is already in use (not yet expired)."""
        with self.transaction() as db:
            db.execute("DELETE FROM nonces WHERE expires <= ?", (now,))
            taken = db.execute("INSERT OR IGNORE INTO nonces (access_key_id, nonce, expires) VALUES (?, ?, ?)",
                               (access_key_id, nonce, now + ttl)).rowcount
        return taken == 1

    def audit(self, *, after: int = 0, limit: int = 10000) -> list[dict]:
        with self._lock:
            rows = self.db.execute("SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        out = []
        for row in rows:
            entry = dict(row)
            entry["params"] = json.loads(entry["params"])
            out.append(entry)
        return out

    def close(self) -> None:
        with self._lock:
            self.db.close()
