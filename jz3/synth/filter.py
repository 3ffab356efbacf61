"""The filter stage: synth records -> JiuZhang3.0 training examples, split by kind.

Order of the checks (cheap first; the first failing one is the record's reason):
format/length (`checks`) -> decontamination (benchmark n-grams) -> exact duplicate -> near
duplicate (MinHash LSH) -> tool verification (sandboxed run; tool records only).

Output under `out_dir`:
  cot/part-00000-of-00001.jsonl    {"input", "output", "id"} chain-of-thought examples
  tool/part-00000-of-00001.jsonl   the same for code solutions (`## Code Solution`)
  rejected.jsonl                   every removed record with its `reason` (+ `stage`)
`run_filter` returns a `FilterResult` (paths, counts, reasons, decontamination hits per
benchmark); the pipeline runner records it in the stage manifest. The stage rewrites its outputs from scratch on a rerun (each file is committed atomically).
The per-record work that does not depend on order (checks, decontamination, MinHash signatures)
runs in `filter.workers` forked processes; keep/drop decisions stay sequential, so the
output does not depend on the number of workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from jz3.config.enums import OnError
from jz3.config.eval import SandboxConfig
from jz3.config.synth import FilterConfig
from jz3.config.validate import check as check_ranges
from jz3.data.decontam import Decontaminator, Match
from jz3.data.dedup import ExactDeduper, NearDeduper, words
from jz3.data.records import (
    AtomicJsonlWriter,
    IOStats,
    Quarantine,
    RecordError,
    RecordKind,
    Stats,
    expand_paths,
    read_records,
    shard_name,
)
from jz3.synth.checks import check_record
from jz3.synth.train_format import COT, TOOL, data_kind, to_train_example

log = logging.getLogger(__name__)
BLOCK = 1024
TOOL_BATCH = 64


def _blocks(it: Iterable[Dict[str, Any]], n: int) -> Iterator[List[Dict[str, Any]]]:
    block: List[Dict[str, Any]] = []
    for r in it:
        block.append(r)
        if len(block) == n:
            yield block
            block = []
    if block:
        yield block


# (check reason, decontamination match, normalised problem, MinHash signature) per record
Features = Tuple[Optional[str], Optional[Match], str, Optional[np.ndarray]]
_STATE: Dict[str, Any] = {}  # filter config, decontaminator, near-deduper (inherited by workers)
_FIELDS = ("prompt_type", "problem", "solution", "answer", "code")


def block_features(recs: List[Dict[str, Any]]) -> List[Features]:
    """The order-independent, CPU-heavy part for a block: checks, decontamination, word
    normalisation and MinHash signatures (runs in worker processes when filter.workers > 1)."""
    fc, decon, near = _STATE["fc"], _STATE["decon"], _STATE["near"]
    checks = [check_record(r, fc) for r in recs]
    idx = [i for i, c in enumerate(checks) if c is None]
    wl = [words(recs[i]["problem"]) for i in idx]
    matches: List[Optional[Match]] = [None] * len(recs)
    if decon is not None and idx:
        texts = ([w + words(recs[i]["solution"]) for i, w in zip(idx, wl, strict=True)]
                 if fc.decontam_solution else wl)
        for i, m in zip(idx, decon.check_many(texts), strict=True):
            matches[i] = m
    clean = [(i, w) for i, w in zip(idx, wl, strict=True) if matches[i] is None]
    normals = [""] * len(recs)
    sigs: List[Optional[np.ndarray]] = [None] * len(recs)
    for i, w in clean:
        normals[i] = " ".join(w)
    if near is not None and clean:
        for (i, _), sig in zip(clean, near.signatures([w for _, w in clean]), strict=True):
            sigs[i] = sig
    return list(zip(checks, matches, normals, sigs, strict=True))


def _slim(rec: Dict[str, Any]) -> Dict[str, Any]:
    return {k: rec.get(k) for k in _FIELDS}


class _Filter:
    def __init__(self, fc: FilterConfig, sandbox: SandboxConfig, out: Path):
        self.fc = fc
        self.sandbox = sandbox
        self.out = out
        self.reasons: Counter = Counter()
        self.decontam_hits: Counter = Counter()
        self.kept: Counter = Counter()
        self.decon = (Decontaminator.from_folders(fc.decontam_benchmarks, fc.decontam_ngram,
                                                  fc.decontam_min_matches)
                      if fc.decontam_benchmarks else None)
        self.exact = ExactDeduper() if fc.dedup_exact else None
        self.near = (NearDeduper(fc.minhash_threshold, fc.minhash_num_perm, fc.minhash_shingle)
                     if fc.dedup_near else None)
        self.verifier = None
        self.pending_tool: List[Dict[str, Any]] = []

    def reject(self, rec: Dict[str, Any], reason: str, stage: str, **extra: Any) -> None:
        self.reasons[reason.split(":", 1)[0]] += 1
        self.quarantine.add(reason, rec, stage=stage, **extra)

    def keep(self, rec: Dict[str, Any]) -> None:
        kind = data_kind(rec["prompt_type"])
        self.writers[kind].write(to_train_example(rec))
        self.kept[kind] += 1

    def block(self, recs: List[Dict[str, Any]], feats: List[Features]) -> None:
        """Order-dependent decisions (first seen is kept) from precomputed features."""
        fc = self.fc
        for r, (check, match, normal, sig) in zip(recs, feats, strict=True):
            if check is not None:
                self.reject(r, check, "checks")
                continue
            if match is not None:
                self.decontam_hits[match.benchmark] += 1
                self.reject(r, f"contaminated: {match.benchmark} test #{match.idx} shares "
                               f"{match.shared_ngrams} {fc.decontam_ngram}-gram(s)", "decontam",
                            benchmark=match.benchmark, benchmark_idx=match.idx)
                continue
            if self.exact is not None:
                first = self.exact.check_add_normal(r["id"], normal)
                if first is not None:
                    self.reject(r, f"duplicate_exact: same problem as {first}", "dedup")
                    continue
            if self.near is not None and sig is not None:
                first = self.near.check_add_signature(r["id"], sig)
                if first is not None:
                    self.reject(r, f"duplicate_near: near-duplicate problem of {first} "
                                   f"(MinHash Jaccard >= {fc.minhash_threshold})", "dedup")
                    continue
            if fc.verify_tool and data_kind(r["prompt_type"]) == TOOL:
                self.pending_tool.append(r)
            else:
                self.keep(r)
        if len(self.pending_tool) >= TOOL_BATCH:
            self.flush_tool()

    def flush_tool(self) -> None:
        if not self.pending_tool:
            return
        if self.verifier is None:
            from jz3.synth.tool_verify import ToolVerifier

            self.verifier = ToolVerifier(self.sandbox, self.fc.tool_timeout_s,
                                         self.fc.tool_workers)
        verdicts = self.verifier.verify(self.pending_tool)
        for r, reason in zip(self.pending_tool, verdicts, strict=True):
            if reason is None:
                self.keep(r)
            else:
                self.reject(r, reason, "tool_verify")
        self.pending_tool = []

    def featurised(self, blocks: Iterator[List[Dict[str, Any]]]
                   ) -> Iterator[Tuple[List[Dict[str, Any]], List[Features]]]:
        """(block, features) in input order; with workers > 1, a bounded window of blocks is
        featurised ahead in forked worker processes."""
        _STATE.update(fc=self.fc, decon=self.decon, near=self.near)
        if self.decon is not None:
            self.decon.freeze()  # build the index once, before forking
        if self.fc.workers <= 1:
            for blk in blocks:
                yield blk, block_features(blk)
            return
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(self.fc.workers) as pool:
            window: deque = deque()
            for blk in blocks:
                window.append((blk, pool.apply_async(block_features, ([_slim(r) for r in blk],))))
                if len(window) > 2 * self.fc.workers:
                    done, res = window.popleft()
                    yield done, res.get()
            while window:
                done, res = window.popleft()
                yield done, res.get()

    def run(self, synth_path: str | Path) -> Dict[str, Any]:
        io = IOStats()
        tmp_rejected = self.out / ".rejected.jsonl.tmp"
        tmp_rejected.unlink(missing_ok=True)
        self.writers = {k: AtomicJsonlWriter(self.out / k / shard_name(0, 1)) for k in (COT, TOOL)}
        try:
            with Quarantine(tmp_rejected) as q:
                self.quarantine = q
                recs = read_records(synth_path, RecordKind.synth, OnError.quarantine, q, io)
                bar = tqdm(desc="filter", unit="rec", mininterval=2)
                for blk, feats in self.featurised(_blocks(recs, BLOCK)):
                    self.block(blk, feats)
                    bar.update(len(blk))
                self.flush_tool()
                bar.close()
            if io.read == 0:
                raise RecordError(", ".join(str(p) for p in expand_paths(synth_path)) or
                                  str(synth_path), 0, "no synth records (empty input)")
            for w in self.writers.values():
                w.commit()
        except BaseException:
            for w in self.writers.values():
                w.abort()
            tmp_rejected.unlink(missing_ok=True)  # no temp file outlives a failed run
            raise
        finally:
            if self.verifier is not None:
                self.verifier.close()
        tmp_rejected.touch()  # Quarantine creates its file on the first rejection only
        os.replace(tmp_rejected, self.out / "rejected.jsonl")
        if io.rejected:
            self.reasons["invalid_record"] += io.rejected
        return {"read": io.read, "kept": sum(self.kept.values()), "kept_by_kind": dict(self.kept),
                "rejected": sum(self.reasons.values()), "reasons": dict(self.reasons),
                "decontam_by_benchmark": {b: self.decontam_hits.get(b, 0)
                                          for b in (self.decon.benchmarks if self.decon else [])},
                "decontam_ngram": self.fc.decontam_ngram}


@dataclass
class FilterResult:
    """What the filter stage wrote: training examples by kind, and every rejected record."""

    cot: str  # folder of {"input", "output", "id"} chain-of-thought examples
    tool: str  # folder of code-solution examples
    rejected: str  # rejected.jsonl
    read: int = 0
    kept: int = 0
    kept_by_kind: Dict[str, int] = field(default_factory=dict)
    stats: Stats = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)  # e.g. nothing kept (the manifest's)
    reasons: Dict[str, int] = field(default_factory=dict)  # rejected records by reason
    decontam_hits: Dict[str, int] = field(default_factory=dict)  # benchmark -> records dropped


def run_filter(fc: FilterConfig, sandbox: SandboxConfig, synth_path: str | Path,
               out_dir: str | Path) -> FilterResult:
    """Filter the synth records at `synth_path` into `out_dir` (see the module docstring)."""
    check_ranges(fc, "filter")
    check_ranges(sandbox, "sandbox")
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = _Filter(fc, sandbox, out).run(synth_path)
    if counts["read"] != counts["kept"] + counts["rejected"]:
        raise RuntimeError(f"filter lost records: read {counts['read']} != kept "
                           f"{counts['kept']} + rejected {counts['rejected']}")
    wall = time.time() - t0
    counts["records_per_s"] = round(counts["read"] / max(wall, 1e-9), 1)
    counts["wall_s"] = round(wall, 3)
    log.info("filter: %d read, %d kept %s, %d rejected %s", counts["read"], counts["kept"],
             counts["kept_by_kind"], counts["rejected"], counts["reasons"])
    kept = {k: int(counts["kept_by_kind"].get(k, 0)) for k in (COT, TOOL)}
    warnings = []
    if counts["kept"] == 0:
        warnings.append(f"filter: kept 0 of {counts['read']} records {counts['reasons']}; "
                        f"see {out / 'rejected.jsonl'}")
        log.warning("%s", warnings[-1])
    return FilterResult(cot=str(out / COT), tool=str(out / TOOL),
                        rejected=str(out / "rejected.jsonl"), read=counts["read"],
                        kept=counts["kept"], kept_by_kind=kept, stats=counts, warnings=warnings,
                        reasons=dict(counts["reasons"]),
                        decontam_hits=dict(counts["decontam_by_benchmark"]))
