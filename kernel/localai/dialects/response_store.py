"""Stored Responses API responses: one SQLite file, bounded by count and age, kept across restarts.

``LOCALAI_DATA_PATH`` (default ``<models>/.localai-data``) holds ``responses.sqlite3``;
``LOCALAI_RESPONSES_STORE_MAX`` (default 1000 responses) and ``LOCALAI_RESPONSES_STORE_TTL``
(seconds, default 30 days) bound it: every write drops what is older than the TTL, then the oldest
beyond the count. Each row keeps the response object and the conversation up to it (what
``previous_response_id`` continues from).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import orjson

SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, created REAL NOT NULL, response BLOB NOT NULL, history BLOB NOT NULL, input BLOB NOT NULL)"""


class ResponseStore:
    def __init__(self, path: Path, max_items: int = 1000, ttl: float = 30 * 86400):
        self.path = Path(path)
        self.max_items = max_items
        self.ttl = ttl
        self._lock = asyncio.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)
            db.execute("CREATE INDEX IF NOT EXISTS responses_created ON responses (created)")

    @classmethod
    def for_settings(cls, settings) -> "ResponseStore":
        root = os.environ.get("LOCALAI_DATA_PATH") or str(Path(settings.models_path) / ".localai-data")
        return cls(Path(root) / "responses.sqlite3",
                   max_items=int(os.environ.get("LOCALAI_RESPONSES_STORE_MAX") or 1000),
                   ttl=float(os.environ.get("LOCALAI_RESPONSES_STORE_TTL") or 30 * 86400))

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One connection per operation (they run in worker threads), committed and closed."""
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def _put(self, response: dict[str, Any], history: list, new: list) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                       (response["id"], now, orjson.dumps(response), orjson.dumps(history), orjson.dumps(new)))
            db.execute("DELETE FROM responses WHERE created < ?", (now - self.ttl,))
            db.execute("DELETE FROM responses WHERE id NOT IN "
                       "(SELECT id FROM responses ORDER BY created DESC LIMIT ?)", (self.max_items,))

    def _get(self, response_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT response, history, input, created FROM responses WHERE id = ?",
                             (response_id,)).fetchone()
        if row is None or row[3] < time.time() - self.ttl:
            return None
        return {"response": orjson.loads(row[0]), "history": orjson.loads(row[1]), "input": orjson.loads(row[2])}

    def _delete(self, response_id: str) -> bool:
        with self._connect() as db:
            return db.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0

    def count(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    async def put(self, response: dict[str, Any], history: list, new: list) -> None:
        async with self._lock:
            await asyncio.to_thread(self._put, response, history, new)

    async def get(self, response_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._get, response_id)

    async def delete(self, response_id: str) -> bool:
        async with self._lock:
            return await asyncio.to_thread(self._delete, response_id)
