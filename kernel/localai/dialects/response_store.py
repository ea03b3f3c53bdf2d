"""Stored Responses API responses: one SQLite file, bounded by count and age, kept across restarts.

The server's state directory (``Settings.state_path``: ``LOCALAI_DATA_PATH``, default
``<models>/.localai-data``) holds ``responses.sqlite3``; ``Settings.responses_store_max``
(``LOCALAI_RESPONSES_STORE_MAX``, default 1000 responses) and ``responses_store_ttl``
(``LOCALAI_RESPONSES_STORE_TTL``, seconds, default 30 days) bound it: every write drops what is
older than the TTL, then the oldest beyond the count. Each row keeps the response object and the
conversation up to it (what ``previous_response_id`` continues from).

Each row also keeps its owner: ``None`` when the server has no API keys, else an HMAC-SHA256 of the
caller's key identity under a secret kept next to the store (``responses.secret``), never the key.
Reads, continuations and deletes match the owner exactly, so one key never sees another's rows;
the count bound applies per owner, so one key cannot evict another's responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import orjson

SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, created REAL NOT NULL, response BLOB NOT NULL, history BLOB NOT NULL, input BLOB NOT NULL,
    owner TEXT)"""


def owner_secret(path: Path) -> bytes:
    """The store's HMAC secret: read from ``path``, or made once (readable by this user only)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


class ResponseStore:
    def __init__(self, path: Path, max_items: int = 1000, ttl: float = 30 * 86400):
        self.path = Path(path)
        self.max_items = max_items
        self.ttl = ttl
        self._lock = asyncio.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._secret = owner_secret(self.path.with_name("responses.secret"))
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)
            if "owner" not in {row[1] for row in db.execute("PRAGMA table_info(responses)")}:
                db.execute("ALTER TABLE responses ADD COLUMN owner TEXT")  # a store from before owners
            db.execute("CREATE INDEX IF NOT EXISTS responses_created ON responses (created)")
            db.execute("CREATE INDEX IF NOT EXISTS responses_owner ON responses (owner, created)")

    def owner(self, identity: str | None) -> str | None:
        """What a row keeps for the caller's key identity (``None``: the server has no keys)."""
        if identity is None:
            return None
        return hmac.new(self._secret, identity.encode(), hashlib.sha256).hexdigest()

    @classmethod
    def for_settings(cls, settings) -> "ResponseStore":
        return cls(settings.state_path / "responses.sqlite3", max_items=settings.responses_store_max,
                   ttl=settings.responses_store_ttl)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per operation (they run in worker threads), committed and closed."""
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def _put(self, owner: str | None, response: dict[str, Any], history: list, new: list) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO responses (id, created, response, history, input, owner) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (response["id"], now, orjson.dumps(response), orjson.dumps(history), orjson.dumps(new),
                        owner))
            db.execute("DELETE FROM responses WHERE created < ?", (now - self.ttl,))
            db.execute("DELETE FROM responses WHERE owner IS ? AND id NOT IN "
                       "(SELECT id FROM responses WHERE owner IS ? ORDER BY created DESC LIMIT ?)",
                       (owner, owner, self.max_items))

    def _get(self, owner: str | None, response_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT response, history, input, created FROM responses WHERE id = ? AND owner IS ?",
                             (response_id, owner)).fetchone()
        if row is None or row[3] < time.time() - self.ttl:
            return None
        return {"response": orjson.loads(row[0]), "history": orjson.loads(row[1]), "input": orjson.loads(row[2])}

    def _delete(self, owner: str | None, response_id: str) -> bool:
        with self._connect() as db:
            return db.execute("DELETE FROM responses WHERE id = ? AND owner IS ?", (response_id, owner)).rowcount > 0

    def count(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    async def put(self, identity: str | None, response: dict[str, Any], history: list, new: list) -> None:
        async with self._lock:
            await asyncio.to_thread(self._put, self.owner(identity), response, history, new)

    async def get(self, identity: str | None, response_id: str) -> dict[str, Any] | None:
        """The row if ``identity`` (the caller's key identity, ``None`` without keys) owns it."""
        return await asyncio.to_thread(self._get, self.owner(identity), response_id)

    async def delete(self, identity: str | None, response_id: str) -> bool:
        async with self._lock:
            return await asyncio.to_thread(self._delete, self.owner(identity), response_id)
