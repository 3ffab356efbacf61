"""Build a KD set: snippets -> education-stage prompts -> teacher -> parsed kd records.

Contract (the pipeline's kd_seed stage passes a seeded random sample of snippet ids, kd_boost
the ids influence ranked first, both through `run_kd`):
`build_kd(teacher_cfg, snippets_path, out_dir, limit=None, ids=None) -> KDStats` reads snippet
records, renders `jz3.prompts.render(prompt_type, text)`, asks the teacher (`teacher_cfg.kind`:
offline pools or an OpenAI-compatible endpoint) through the journal (`journal`, shared by
every KD stage of a run, so no prompt is ever paid twice) and the hard budget, parses each
completion with `jz3.synth.parse.parse_completion`, and writes atomically:
- `out_dir/kd.jsonl`: `{id, snippet_id, prompt_type, prompt, completion, problem, solution,
  answer, model, usage}`, in snippet order; `completion` is exactly the teacher's text, i.e.
  what the synthesizer is trained to write after `prompt`.
- `out_dir/rejected.jsonl`: `{reason, snippet_id, ...}` for unparseable completions
  (`parse: <ParseFailure>`), failed requests (`teacher_failed: ...`), requests the budget
  refused (`budget_exhausted: ...`) and unknown `ids` (`unknown_snippet_id`).
`run_kd` returns a `KDResult` (paths, counts, usage, journal totals, budget report), which the
pipeline runner records in the stage manifest; when no snippet gave a kd record it raises
`jz3.errors.StageFailed` with the cause in one line (`kd_seed: 0 of 20 requests succeeded:
20 × http_401 'Incorrect API key' from http://127.0.0.1:8000/v1`).
A rerun after a crash re-sends only what the journal does not hold as answered, and first
removes the temp files a killed run of the stage left in `out_dir` (only the names it writes).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from jz3.config.enums import TeacherKind
from jz3.config.teacher import TeacherConfig
from jz3.data.records import AtomicJsonlWriter, RecordError, RecordKind, read_records
from jz3.errors import StageFailed
from jz3.prompts import render_snippet
from jz3.synth.parse import ParseError, parse_completion
from jz3.teacher.dispatch import TeacherRunner, sampling_params
from jz3.teacher.journal import Journal, request_key
from jz3.teacher.types import OutcomeStatus, TeacherBackend, TeacherRequest

log = logging.getLogger(__name__)

KD_FILE, REJECTED_FILE, IDS_FILE = "kd.jsonl", "rejected.jsonl", "requested_ids.json"


def remove_stale_temps(out_dir: str | Path) -> List[str]:
    """Delete the temp files of this stage's outputs that a killed run left in `out_dir`
    (`.kd.jsonl.*.tmp`, `.rejected.jsonl.*.tmp`, `.requested_ids.json.tmp*`); returns them."""
    out = Path(out_dir)
    gone = []
    for pattern in (f".{KD_FILE}.*.tmp", f".{REJECTED_FILE}.*.tmp", f".{IDS_FILE}.tmp*"):
        for p in out.glob(pattern):
            p.unlink(missing_ok=True)
            gone.append(p.name)
    if gone:
        log.info("kd: removed %d temp files of a killed run from %s", len(gone), out)
    return gone


@dataclass
class KDStats:
    snippets: int = 0
    requests: int = 0
    written: int = 0
    rejected: int = 0
    reasons: Dict[str, int] = field(default_factory=dict)
    usage: Dict[str, Any] = field(default_factory=dict)  # this run: attempts, retries, errors
    journal: Dict[str, Any] = field(default_factory=dict)  # all runs: calls, tokens, cost
    budget: Dict[str, Any] = field(default_factory=dict)
    model: str = ""
    wall_s: float = 0.0

    def reject(self, reason: str) -> None:
        self.rejected += 1
        key = reason.split(":", 1)[0]
        self.reasons[key] = self.reasons.get(key, 0) + 1

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@functools.lru_cache(maxsize=2)
def _offline(pools: Tuple[str, ...], name: str, top_k: int,
             max_chars: Optional[int] = None) -> TeacherBackend:
    from jz3.teacher.offline import OfflineTeacher

    return OfflineTeacher(pools, name=name, top_k=top_k, max_chars=max_chars)


def make_backend(cfg: TeacherConfig) -> TeacherBackend:
    """The teacher named by `cfg.kind` (the offline one is built once per process)."""
    if cfg.kind == TeacherKind.offline:
        return _offline(tuple(cfg.offline_pools), cfg.model, cfg.offline_top_k,
                        cfg.offline_max_chars)
    from jz3.teacher.openai_client import OpenAIBackend

    return OpenAIBackend(cfg)


def _select(snippets_path: str | Path, limit: Optional[int], ids: Optional[Sequence[str]],
            rejected: AtomicJsonlWriter, stats: KDStats) -> List[Dict[str, Any]]:
    snippets = list(read_records(snippets_path, RecordKind.snippet))
    if not snippets:
        raise RecordError(snippets_path, 0, "no snippet records (empty input)")
    if ids is not None:
        by_id = {s["id"]: s for s in snippets}
        chosen, seen = [], set()
        for sid in ids:
            if sid in seen:
                continue
            seen.add(sid)
            if sid not in by_id:
                rejected.write({"reason": f"unknown_snippet_id: {sid!r} not in {snippets_path}",
                                "snippet_id": sid})
                stats.reject("unknown_snippet_id")
                continue
            chosen.append(by_id[sid])
        snippets = chosen
    if limit is not None:
        snippets = snippets[:limit]
    return snippets


def build_kd(tcfg: TeacherConfig, snippets_path: str | Path, out_dir: str | Path,
             limit: Optional[int] = None, ids: Optional[Sequence[str]] = None,
             backend: Optional[TeacherBackend] = None, progress: bool = True) -> KDStats:
    """Build `out_dir/kd.jsonl` (see the module docstring)."""
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    stats = KDStats()
    rejected = AtomicJsonlWriter(out / REJECTED_FILE)
    kd = AtomicJsonlWriter(out / KD_FILE)
    try:
        snippets = _select(snippets_path, limit, ids, rejected, stats)
        stats.snippets = len(snippets)
        backend = backend or make_backend(tcfg)
        stats.model = backend.name
        requests = []
        for s in snippets:
            prompt = render_snippet(s)
            params = sampling_params(tcfg, s["prompt_type"])
            requests.append(TeacherRequest(request_key(backend.name, prompt, params), prompt,
                                           s["prompt_type"], s["text"], params=params))
        stats.requests = len(requests)
        with Journal(tcfg.journal, tcfg.journal_sync) as journal:
            runner = TeacherRunner(backend, journal, tcfg)
            outcomes = asyncio.run(runner.run(requests, progress=progress))
            stats.journal = asdict(journal.totals())
        stats.usage = asdict(runner.report)
        stats.budget = runner.budget.report()
        for s, req, o in zip(snippets, requests, outcomes, strict=True):
            base = {"snippet_id": s["id"], "prompt_type": s["prompt_type"], "key": req.key}
            if o.status == OutcomeStatus.budget_exhausted:
                rejected.write({"reason": o.reason, **base})
                stats.reject(o.reason or "budget_exhausted")
                continue
            if o.status == OutcomeStatus.failed:
                reason = f"teacher_failed: {o.reason}"
                rejected.write({"reason": reason, **base})
                stats.reject(reason)
                continue
            assert o.text is not None
            try:
                p = parse_completion(o.text, s["prompt_type"])
            except ParseError as e:
                reason = f"parse: {e}"
                rejected.write({"reason": reason, **base, "completion": o.text, "model": o.model})
                stats.reject(f"parse_{e.reason.value}")
                continue
            kd.write({"id": f"{s['id']}|{s['prompt_type']}", "snippet_id": s["id"],
                      "prompt_type": s["prompt_type"], "prompt": req.prompt, "completion": o.text,
                      "problem": p.problem, "solution": p.solution, "answer": p.answer,
                      "model": o.model or backend.name, "usage": o.usage})
            stats.written += 1
    except BaseException:
        kd.abort()
        rejected.abort()
        raise
    kd.commit()
    rejected.commit()
    stats.wall_s = round(time.time() - t0, 3)
    log.info("kd: %d snippets -> %d kd records, %d rejected %s; usage %s", stats.snippets,
             stats.written, stats.rejected, stats.reasons, stats.budget)
    return stats


@dataclass
class TeacherCalls:
    """A KD stage's teacher traffic: its own HTTP attempts, and the run's journal totals
    (cumulative over the run's KD stages: one journal per run, a prompt is never paid twice)."""

    attempts: int = 0  # this stage's attempts (never-sent ones included)
    retries: int = 0
    journal_calls: int = 0
    journal_tokens: int = 0
    journal_cost_usd: float = 0.0
    budget_cost_usd: float = 0.0  # what this stage's budget booked

    @classmethod
    def of(cls, st: KDStats) -> TeacherCalls:
        """From a finished `build_kd`'s stats (the runner's report, journal totals, budget)."""
        return cls(attempts=int(st.usage["attempts"]), retries=int(st.usage["retries"]),
                   journal_calls=int(st.journal["calls"]), journal_tokens=int(st.journal["tokens"]),
                   journal_cost_usd=float(st.journal["cost"]),
                   budget_cost_usd=float(st.budget["cost_usd"]))


@dataclass
class KDResult:
    """What a KD stage wrote."""

    kd: str  # kd.jsonl
    rejected: str  # rejected.jsonl
    ids: str  # requested_ids.json: the snippet ids sent to the teacher, in order
    requested: int = 0
    written: int = 0
    rejected_count: int = 0
    stats: Dict[str, Any] = field(default_factory=dict)  # KDStats as a dict
    warnings: List[str] = field(default_factory=list)  # e.g. no usable record (the manifest's)
    calls: TeacherCalls = field(default_factory=TeacherCalls)  # none for an imported KD set


def failure_line(stage: str, tcfg: TeacherConfig, st: KDStats, requested: int,
                 out: Path) -> str:
    """The one-line cause of a KD stage that gave no record."""
    where = tcfg.base_url if tcfg.kind == TeacherKind.openai else f"the {tcfg.kind.value} teacher"
    usage = st.usage or {}
    answered = int(usage.get("ok", 0))
    causes = usage.get("causes") or {}
    if answered == 0 and causes:
        top = "; ".join(f"{n} × {c}" for c, n in sorted(causes.items(), key=lambda kv: -kv[1])[:3])
        line = f"{stage}: 0 of {st.requests} requests succeeded: {top} from {where}"
        if usage.get("breaker"):
            line += f" (stopped after {usage['breaker'].split(' from ')[0]})"
        return line
    return (f"{stage}: 0 of {requested} requested snippets gave a kd record "
            f"({answered} answered by {where}; rejected {st.reasons}); see {out / REJECTED_FILE}")


def run_kd(tcfg: TeacherConfig, snippets_path: str | Path, out_dir: str | Path,
           ids: Sequence[str], backend: Optional[TeacherBackend] = None,
           stage: str = "kd") -> KDResult:
    """The kd_seed / kd_boost stage body: teacher answers for the snippets `ids`; raises
    `StageFailed` (named `stage`) when none gives a kd record."""
    import json

    from jz3.data.records import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    ids = list(ids)
    if not ids:
        raise ValueError(f"{stage}: no snippet ids to send to the teacher (a count of 0 or an "
                         f"empty selection); snippets: {snippets_path}")
    atomic_write_text(out / IDS_FILE, json.dumps(ids))
    st = build_kd(tcfg, snippets_path, out, ids=ids, backend=backend)
    if st.written == 0:
        raise StageFailed(failure_line(stage, tcfg, st, len(ids), out))
    warnings: List[str] = []
    return KDResult(kd=str(out / KD_FILE), rejected=str(out / REJECTED_FILE),
                    ids=str(out / "requested_ids.json"), requested=len(ids),
                    written=st.written, rejected_count=st.rejected, stats=st.as_dict(),
                    warnings=warnings, calls=TeacherCalls.of(st))


def import_kd(path: str | Path, out_dir: str | Path, keep_prompts: bool = False) -> KDResult:
    """A KD stage without a teacher: the existing KD set `path` in the JiuZhang3.0 release's
    format (or jz3's own) converted by `jz3.synth.parse.read_release_kd` into `out_dir/kd.jsonl`;
    rows it cannot use go to `rejected.jsonl` with the reason and their file:line."""
    import hashlib
    import json

    from jz3.data.records import atomic_write_text
    from jz3.synth.parse import read_release_kd

    src = Path(path)
    if not src.is_file():
        raise FileNotFoundError(f"kd from_file: {src} is not a file (a release-format KD set: "
                                "JSON lines or a JSON array)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    good, bad = read_release_kd(src, reprompt=not keep_prompts)
    if not good and not bad:
        raise RecordError(src, 0, "kd from_file: no rows (empty input)")
    with AtomicJsonlWriter(out / KD_FILE) as kd, AtomicJsonlWriter(out / REJECTED_FILE) as rej:
        for r in good:
            kd.write(r)
        for r in bad:
            rej.write(r)
    ids = list(dict.fromkeys(r["snippet_id"] for r in good))
    atomic_write_text(out / "requested_ids.json", json.dumps(ids))
    reasons: Dict[str, int] = {}
    for r in bad:
        key = str(r["reason"]).split(":", 1)[0][:60]
        reasons[key] = reasons.get(key, 0) + 1
    stats = {"source": str(src), "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
             "rows": len(good) + len(bad), "reprompted": not keep_prompts, "reasons": reasons}
    warnings = []
    if not good:
        warnings.append(f"kd from_file: none of the {len(bad)} rows of {src} is usable "
                        f"({reasons}); see {out / REJECTED_FILE}")
        log.warning("%s", warnings[-1])
    log.info("kd: imported %d kd records from %s (%d rejected %s)", len(good), src, len(bad),
             reasons)
    return KDResult(kd=str(out / KD_FILE), rejected=str(out / REJECTED_FILE),
                    ids=str(out / "requested_ids.json"), requested=len(good) + len(bad),
                    written=len(good), rejected_count=len(bad), stats=stats, warnings=warnings)
