"""The filter stage: synth records -> JiuZhang3.0 training examples, split by kind.

Order of the checks (cheap first; the first failing one is the record's reason):
format/length (`checks`) -> decontamination (benchmark n-grams) -> exact duplicate -> near
duplicate (MinHash LSH) -> tool verification (sandboxed run; tool records only).

Output under `out_dir`:
  cot/part-00000-of-00001.jsonl    {"input", "output", "id"} chain-of-thought examples
  tool/part-00000-of-00001.jsonl   the same for code solutions (`## Code Solution`)
  rejected.jsonl                   every removed record with its `reason` (+ `stage`)
  manifest.json                    counts, reasons, decontamination hits per benchmark
The stage rewrites its outputs from scratch on a rerun (each file is committed atomically).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

from tqdm import tqdm

from jz3.config.enums import OnError
from jz3.config.root import JZ3Config
from jz3.data.decontam import Decontaminator
from jz3.data.dedup import ExactDeduper, NearDeduper, words
from jz3.data.records import (
    AtomicJsonlWriter,
    IOStats,
    Quarantine,
    RecordKind,
    read_records,
    shard_name,
)
from jz3.pipeline.manifest import config_hash, write_manifest
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


class _Filter:
    def __init__(self, cfg: JZ3Config, out: Path):
        fc = self.fc = cfg.synth.filter
        self.sandbox = cfg.eval.sandbox
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

    def block(self, recs: List[Dict[str, Any]]) -> None:
        fc = self.fc
        live = []
        for r in recs:
            reason = check_record(r, fc)
            if reason:
                self.reject(r, reason, "checks")
            else:
                live.append(r)
        wl = [words(r["problem"]) for r in live]
        if self.decon is not None and live:
            texts = ([w + words(r["solution"]) for w, r in zip(wl, live, strict=True)]
                     if fc.decontam_solution else wl)
            nxt, nwl = [], []
            for r, w, m in zip(live, wl, self.decon.check_many(texts), strict=True):
                if m is None:
                    nxt.append(r)
                    nwl.append(w)
                    continue
                self.decontam_hits[m.benchmark] += 1
                self.reject(r, f"contaminated: {m.benchmark} test #{m.idx} shares "
                               f"{m.shared_ngrams} {fc.decontam_ngram}-gram(s)", "decontam",
                            benchmark=m.benchmark, benchmark_idx=m.idx)
            live, wl = nxt, nwl
        if self.exact is not None:
            nxt, nwl = [], []
            for r, w in zip(live, wl, strict=True):
                first = self.exact.check_add_normal(r["id"], " ".join(w))
                if first is None:
                    nxt.append(r)
                    nwl.append(w)
                else:
                    self.reject(r, f"duplicate_exact: same problem as {first}", "dedup")
            live, wl = nxt, nwl
        if self.near is not None and live:
            nxt = []
            for r, sig in zip(live, self.near.signatures(wl), strict=True):
                first = self.near.check_add_signature(r["id"], sig)
                if first is None:
                    nxt.append(r)
                else:
                    self.reject(r, f"duplicate_near: near-duplicate problem of {first} "
                                   f"(MinHash Jaccard >= {fc.minhash_threshold})", "dedup")
            live = nxt
        for r in live:
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
                for blk in _blocks(recs, BLOCK):
                    self.block(blk)
                    bar.update(len(blk))
                self.flush_tool()
                bar.close()
            for w in self.writers.values():
                w.commit()
        except BaseException:
            for w in self.writers.values():
                w.abort()
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


def run_filter(cfg: JZ3Config, synth_path: Optional[str | Path] = None,
               out_dir: Optional[str | Path] = None) -> Dict[str, Any]:
    """Filter `synth_path` (default `synth.filter.input`) into `out_dir`; returns the counts."""
    t0 = time.time()
    fc = cfg.synth.filter
    src = synth_path if synth_path is not None else fc.input
    out = Path(out_dir if out_dir is not None else fc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = _Filter(cfg, out).run(src)
    if counts["read"] != counts["kept"] + counts["rejected"]:
        raise RuntimeError(f"filter lost records: read {counts['read']} != kept "
                           f"{counts['kept']} + rejected {counts['rejected']}")
    wall = time.time() - t0
    counts["records_per_s"] = round(counts["read"] / max(wall, 1e-9), 1)
    write_manifest(out, "filter", config_hash(fc), counts=counts,
                   outputs=[f"{COT}/{shard_name(0, 1)}", f"{TOOL}/{shard_name(0, 1)}",
                            "rejected.jsonl"], wall_s=round(wall, 3),
                   extra={"decontam_benchmarks": list(fc.decontam_benchmarks)})
    log.info("filter: %d read, %d kept %s, %d rejected %s", counts["read"], counts["kept"],
             counts["kept_by_kind"], counts["rejected"], counts["reasons"])
    return counts
