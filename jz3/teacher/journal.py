"""Durable call journal (SQLite in WAL mode): never pay twice for the same teacher prompt.

One row per request key = sha256 of (model, prompt, sampling params) (`request_key`):
`status` pending | ok | failed (| probe: an idempotency probe), the completion and usage once answered, every attempt's error
reason, and the money/tokens/calls charged to it. An attempt is charged its worst case *before*
it is sent (`begin_attempt`) and settled to its real usage after (`settle_*`), so a run killed
with requests in flight keeps their reservations on the books and the budget still holds after
a rerun. `synchronous=NORMAL` in WAL mode survives a killed process (kill -9); `full` also
survives power loss at one fsync per commit.

Attempts by billing class (`jz3.teacher.types.Billing`): one that was never sent is settled at
0 and counted in `unsent` (it is no call either); one that was lost is settled at its worst case
and that charge is also kept in `orphan_*`: "releasable once the key is answered".

Budget after a kill (`reconcile`, policy `teacher.reconcile`): a rerun moves every attempt
still reserved by a dead run to `orphan_*` and books it at
- `strict`: its worst case (prompt-token bound + `max_tokens`);
- `estimate`: the prompt-token bound + the largest completion this journal has seen answered
  (`max_tokens` if none); the runner uses it only where the endpoint honours keys.
Where the endpoint honours `Idempotency-Key` (probed, or trusted), a key's `orphan_*` is given
back once the key is answered (`settle_ok(release_orphan=True)`): the server either replays the
answer it produced for the lost attempt (billed once, booked by the new attempt at its real
usage) or never produced it and produces it now (billed once too). Where it does not, lost
attempts stay booked at their worst case: the server's bill never exceeds what is booked.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

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
    orphan_tokens INTEGER NOT NULL DEFAULT 0,
    orphan_cost REAL NOT NULL DEFAULT 0,
    unsent INTEGER NOT NULL DEFAULT 0,
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
    orphan_tokens: int = 0  # what dead runs' attempts of this key are booked at
    orphan_cost: float = 0.0


@dataclass
class Totals:
    """What the journal has charged so far, across every run."""

    calls: int = 0  # attempts that left the client (never-sent ones excluded)
    tokens: int = 0
    cost: float = 0.0
    ok: int = 0
    failed: int = 0
    pending: int = 0
    unsettled: int = 0  # attempts in flight when a previous run died, not yet reconciled
    orphaned: int = 0  # reconciled attempts of dead runs still booked (orphan_* > 0)
    orphan_tokens: int = 0
    orphan_cost: float = 0.0
    unsent: int = 0  # attempts that never left the client (refused, DNS, TLS): not billed


@dataclass
class Reconciled:
    """What `Journal.reconcile` did to the attempts a dead run left in flight."""

    policy: str
    attempts: int = 0
    worst_tokens: int = 0  # what they were booked at (worst case)
    worst_cost: float = 0.0
    booked_tokens: int = 0  # what they are booked at now
    booked_cost: float = 0.0


class Journal:
    """The SQLite journal; use from one thread (the event loop's)."""

    def __init__(self, path: str | Path, sync: JournalSync = JournalSync.normal):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={JournalSync(sync).value.upper()}")
        self._db.executescript(_SCHEMA)
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(calls)")}
        for col, decl in (("orphan_tokens", "INTEGER NOT NULL DEFAULT 0"),
                          ("orphan_cost", "REAL NOT NULL DEFAULT 0"),
                          ("unsent", "INTEGER NOT NULL DEFAULT 0")):
            if col not in cols:  # a journal written before reconciliation existed
                self._db.execute(f"ALTER TABLE calls ADD COLUMN {col} {decl}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    _COLUMNS = ("key, status, completion, response_model, finish_reason, usage, reason, errors,"
                " attempts, orphan_tokens, orphan_cost")

    @staticmethod
    def _entry(row: tuple) -> JournalEntry:
        return JournalEntry(row[0], row[1], row[2], row[3], row[4],
                            json.loads(row[5]) if row[5] else None, row[6], json.loads(row[7]),
                            row[8], int(row[9]), float(row[10]))

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
            "SELECT COALESCE(SUM(attempts - unsent),0), COALESCE(SUM(charged_tokens),0),"
            " COALESCE(SUM(charged_cost),0), COALESCE(SUM(status='ok'),0),"
            " COALESCE(SUM(status='failed'),0), COALESCE(SUM(status='pending'),0),"
            " COALESCE(SUM(pending_tokens > 0 OR pending_cost > 0),0),"
            " COALESCE(SUM(orphan_tokens > 0 OR orphan_cost > 0),0),"
            " COALESCE(SUM(orphan_tokens),0), COALESCE(SUM(orphan_cost),0),"
            " COALESCE(SUM(unsent),0) FROM calls").fetchone()
        return Totals(calls=int(r[0]), tokens=int(r[1]), cost=float(r[2]), ok=int(r[3]),
                      failed=int(r[4]), pending=int(r[5]), unsettled=int(r[6]),
                      orphaned=int(r[7]), orphan_tokens=int(r[8]), orphan_cost=float(r[9]),
                      unsent=int(r[10]))

    def max_completion_tokens(self) -> Optional[int]:
        """The largest `completion_tokens` among answered requests (None: none answered)."""
        best = None
        for (usage,) in self._db.execute("SELECT usage FROM calls WHERE status='ok'"):
            try:
                ct = int((json.loads(usage) or {}).get("completion_tokens") or 0)
            except (TypeError, ValueError, AttributeError):
                continue
            best = ct if best is None else max(best, ct)
        return best

    def reconcile(self, policy: str,
                  estimate: Callable[[str], Tuple[int, float]]) -> Reconciled:
        """Re-book the attempts a dead run left reserved (see the module docstring): `policy`
        `strict` keeps their worst case, `estimate` books `estimate(prompt)` (never more than
        the worst case). Either way they move to `orphan_*` and stop being `unsettled`."""
        rec = Reconciled(policy)
        rows = self._db.execute(
            "SELECT key, prompt, pending_tokens, pending_cost FROM calls"
            " WHERE pending_tokens > 0 OR pending_cost > 0").fetchall()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for key, prompt, p_tok, p_cost in rows:
                if policy == "strict":
                    tok, cost = int(p_tok), float(p_cost)
                else:
                    e_tok, e_cost = estimate(prompt)
                    tok, cost = min(int(p_tok), int(e_tok)), min(float(p_cost), float(e_cost))
                self._db.execute(
                    "UPDATE calls SET charged_tokens=charged_tokens-pending_tokens+?,"
                    " charged_cost=charged_cost-pending_cost+?, orphan_tokens=orphan_tokens+?,"
                    " orphan_cost=orphan_cost+?, pending_tokens=0, pending_cost=0, updated=?"
                    " WHERE key=?", (tok, cost, tok, cost, time.time(), key))
                rec.attempts += 1
                rec.worst_tokens += int(p_tok)
                rec.worst_cost += float(p_cost)
                rec.booked_tokens += tok
                rec.booked_cost += cost
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return rec

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
                  cost: float, release_orphan: bool = False) -> Tuple[int, float]:
        """Record the answer and replace the attempt's reservation by its real charge; with
        `release_orphan`, also drop what dead runs' attempts of this key were booked at (the
        key was answered idempotently: one generation billed). Returns what was released."""
        orphan = (0, 0.0)
        if release_orphan:
            row = self._db.execute("SELECT orphan_tokens, orphan_cost FROM calls WHERE key=?",
                                   (key,)).fetchone()
            orphan = (int(row[0]), float(row[1])) if row else (0, 0.0)
        self._db.execute(
            "UPDATE calls SET status='ok', completion=?, response_model=?, finish_reason=?,"
            " usage=?, reason=NULL, updated=?,"
            " charged_tokens=charged_tokens-pending_tokens+?-?,"
            " charged_cost=charged_cost-pending_cost+?-?, pending_tokens=0, pending_cost=0,"
            " orphan_tokens=orphan_tokens-?, orphan_cost=orphan_cost-? WHERE key=?",
            (completion, response_model, finish_reason, json.dumps(usage), time.time(),
             int(tokens), orphan[0], float(cost), orphan[1], orphan[0], orphan[1], key))
        return orphan

    def settle_error(self, key: str, reason: str, tokens: int, cost: float,
                     unsent: bool = False, releasable: bool = False) -> None:
        """Record a failed attempt (the request stays pending) with what it is charged;
        `unsent`: it never left the client (no call); `releasable`: a lost attempt whose
        charge is given back if the key is answered idempotently (kept in `orphan_*`)."""
        row = self._db.execute("SELECT errors FROM calls WHERE key=?", (key,)).fetchone()
        errors = json.loads(row[0]) if row else []
        errors.append(reason)
        rel_t, rel_c = (int(tokens), float(cost)) if releasable else (0, 0.0)
        self._db.execute(
            f"UPDATE calls SET errors=?, reason=?, updated=?, unsent=unsent+?,"
            f" orphan_tokens=orphan_tokens+?, orphan_cost=orphan_cost+?, {self._SETTLE}"
            " WHERE key=?",
            (json.dumps(errors), reason, time.time(), int(unsent), rel_t, rel_c, int(tokens),
             float(cost), key))

    def mark_failed(self, key: str, reason: str) -> None:
        self._db.execute("UPDATE calls SET status='failed', reason=?, updated=? WHERE key=?",
                         (reason, time.time(), key))

    def mark_probe(self, key: str) -> None:
        """An idempotency probe's row: its calls and charges count, it is no request."""
        self._db.execute("UPDATE calls SET status='probe', updated=? WHERE key=?",
                         (time.time(), key))
