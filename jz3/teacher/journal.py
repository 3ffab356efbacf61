"""Durable call journal (SQLite in WAL mode): never pay twice for the same teacher prompt.

One row per request key = sha256 of (model, prompt, sampling params) (`request_key`):
`status` pending | ok | failed, the completion and usage once answered, every attempt's error
reason, and the money/tokens/calls charged to it. An attempt is charged its worst case *before*
it is sent (`begin_attempt`) and settled to its real usage after (`settle_*`), so a run killed
with requests in flight keeps their reservations on the books and the budget still holds after
a rerun. `synchronous=NORMAL` in WAL mode survives a killed process (kill -9); `full` also
survives power loss at one fsync per commit.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from jz3.config.enums import JournalSync

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    completion TEXT,
    response_model TEXT,
    finish_reason TEXT,
    usage TEXT,
    reason TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0,
    charged_tokens INTEGER NOT NULL DEFAULT 0,
    charged_cost REAL NOT NULL DEFAULT 0,
    pending_tokens INTEGER NOT NULL DEFAULT 0,
    pending_cost REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
"""


def request_key(model: str, prompt: str, params: Dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of (model, prompt, sampling params)."""
    blob = json.dumps({"model": model, "prompt": prompt, "params": params}, sort_keys=True,
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class JournalEntry:
    key: str
    status: str  # pending | ok | failed
    completion: Optional[str]
    response_model: Optional[str]
    finish_reason: Optional[str]
    usage: Optional[Dict[str, Any]]
    reason: Optional[str]
    errors: List[str]
    attempts: int


@dataclass
class Totals:
    """What the journal has charged so far, across every run."""

    calls: int = 0
    tokens: int = 0
    cost: float = 0.0
    ok: int = 0
    failed: int = 0
    pending: int = 0
    unsettled: int = 0  # attempts in flight when a previous run died (charged at worst case)


class Journal:
    """The SQLite journal; use from one thread (the event loop's)."""

    def __init__(self, path: str | Path, sync: JournalSync = JournalSync.normal):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={JournalSync(sync).value.upper()}")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    _COLUMNS = ("key, status, completion, response_model, finish_reason, usage, reason, errors,"
                " attempts")

    @staticmethod
    def _entry(row: tuple) -> JournalEntry:
        return JournalEntry(row[0], row[1], row[2], row[3], row[4],
                            json.loads(row[5]) if row[5] else None, row[6], json.loads(row[7]),
                            row[8])

    def get(self, key: str) -> Optional[JournalEntry]:
        row = self._db.execute(f"SELECT {self._COLUMNS} FROM calls WHERE key = ?",
                               (key,)).fetchone()
        return None if row is None else self._entry(row)

    def get_many(self, keys: List[str], chunk: int = 500) -> Dict[str, JournalEntry]:
        """The entries of those `keys` that the journal holds (one query per `chunk` keys)."""
        out: Dict[str, JournalEntry] = {}
        for i in range(0, len(keys), chunk):
            part = keys[i:i + chunk]
            marks = ",".join("?" * len(part))
            for row in self._db.execute(
                    f"SELECT {self._COLUMNS} FROM calls WHERE key IN ({marks})", part):
                out[row[0]] = self._entry(row)
        return out

    def totals(self) -> Totals:
        r = self._db.execute(
            "SELECT COALESCE(SUM(attempts),0), COALESCE(SUM(charged_tokens),0),"
            " COALESCE(SUM(charged_cost),0), COALESCE(SUM(status='ok'),0),"
            " COALESCE(SUM(status='failed'),0), COALESCE(SUM(status='pending'),0),"
            " COALESCE(SUM(pending_tokens > 0 OR pending_cost > 0),0) FROM calls").fetchone()
        return Totals(calls=int(r[0]), tokens=int(r[1]), cost=float(r[2]), ok=int(r[3]),
                      failed=int(r[4]), pending=int(r[5]), unsettled=int(r[6]))

    def begin_attempt(self, key: str, model: str, prompt: str, params: Dict[str, Any],
                      tokens: int, cost: float) -> None:
        """Durably charge one attempt its worst case before it is sent."""
        now = time.time()
        self._db.execute(
            "INSERT INTO calls (key, model, prompt, params, status, attempts, charged_tokens,"
            " charged_cost, pending_tokens, pending_cost, created, updated)"
            " VALUES (?, ?, ?, ?, 'pending', 1, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET status='pending', attempts=attempts+1,"
            " charged_tokens=charged_tokens+excluded.charged_tokens,"
            " charged_cost=charged_cost+excluded.charged_cost,"
            " pending_tokens=excluded.pending_tokens, pending_cost=excluded.pending_cost,"
            " updated=excluded.updated",
            (key, model, prompt, json.dumps(params, sort_keys=True), tokens, cost, tokens, cost,
             now, now))

    _SETTLE = ("charged_tokens=charged_tokens-pending_tokens+?, "
               "charged_cost=charged_cost-pending_cost+?, pending_tokens=0, pending_cost=0")

    def settle_ok(self, key: str, completion: str, response_model: str,
                  finish_reason: Optional[str], usage: Dict[str, Any], tokens: int,
                  cost: float) -> None:
        """Record the answer and replace the attempt's reservation by its real charge."""
        self._db.execute(
            "UPDATE calls SET status='ok', completion=?, response_model=?, finish_reason=?,"
            f" usage=?, reason=NULL, updated=?, {self._SETTLE} WHERE key=?",
            (completion, response_model, finish_reason, json.dumps(usage), time.time(),
             int(tokens), float(cost), key))

    def settle_error(self, key: str, reason: str, tokens: int, cost: float) -> None:
        """Record a failed attempt (the request stays pending) with what it is charged."""
        row = self._db.execute("SELECT errors FROM calls WHERE key=?", (key,)).fetchone()
        errors = json.loads(row[0]) if row else []
        errors.append(reason)
        self._db.execute(
            f"UPDATE calls SET errors=?, reason=?, updated=?, {self._SETTLE} WHERE key=?",
            (json.dumps(errors), reason, time.time(), int(tokens), float(cost), key))

    def mark_failed(self, key: str, reason: str) -> None:
        self._db.execute("UPDATE calls SET status='failed', reason=?, updated=? WHERE key=?",
                         (reason, time.time(), key))

    def count_answered(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM calls WHERE status='ok'").fetchone()[0])
