"""Sharded, resumable synthesis and the merge that proves the output complete.

`synthesize_shard` runs the synthesizer on every snippet of one shard (round-robin by input
order over unique snippet ids), committing chunks of `flush_every` results; rerun after a kill,
it skips what was committed. `merge_shards` checks that every input snippet was answered exactly
once (a synth record, or a failure with its reason), then writes `synth.jsonl`,
`rejected.jsonl` and returns a `SynthResult`. `run_synthesize` does every shard, then the merge.
Provenance (manifests, cache keys) is the pipeline runner's; the shards' `config_hash` here only
guards a resumed shard against mixing outputs of different sampling settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from tqdm import tqdm

from jz3.config.synth import SynthConfig
from jz3.config.validate import check
from jz3.data.records import (
    AtomicJsonlWriter,
    RecordError,
    RecordKind,
    Stats,
    read_records,
    shard_from_env,
)
from jz3.generation import Generator, GenRequest, record_seed
from jz3.synth.generator import make_generator
from jz3.synth.records import is_tool, to_synth_record
from jz3.synth.shard_store import FAILED, OK, ShardStore, envelope

log = logging.getLogger(__name__)
SYNTH_FILE = "synth.jsonl"
REJECTED_FILE = "rejected.jsonl"


class IncompleteSynthesis(RuntimeError):
    """Merge found missing shards or unanswered snippets (the message says which)."""


def unique_snippets(snippets_path: str | Path, limit: Optional[int] = None
                    ) -> Iterator[Tuple[int, Dict[str, Any], bool]]:
    """(index among unique ids, snippet, is_duplicate) in input order; duplicates get index -1."""
    seen: set = set()
    n = 0
    for s in read_records(snippets_path, kind=RecordKind.snippet):
        if limit is not None and n >= limit:
            return
        if s["id"] in seen:
            yield -1, s, True
            continue
        seen.add(s["id"])
        yield n, s, False
        n += 1


@dataclass
class SynthResult:
    """What the synthesize stage wrote: merged records, failures, counts."""

    records: str  # synth.jsonl: one synth record per answered snippet
    rejected: str  # rejected.jsonl: {reason, snippet_id, completion} per failure
    snippets: int = 0
    ok: int = 0
    failed: int = 0
    shards: int = 1
    stats: Stats = field(default_factory=dict)  # counts, reasons, tokens, wall times
    warnings: List[str] = field(default_factory=list)  # e.g. no usable record (the manifest's)
    # the records of `rejected` by reason (its text up to the first ":")
    reasons: Dict[str, int] = field(default_factory=dict)


def shard_config_hash(s: SynthConfig, model_path: Any) -> str:
    """Sampling settings a shard was written with (a resumed shard must match them)."""
    parts = [s.backend.value, str(model_path), s.temperature, s.top_p, s.max_new_tokens,
             s.tool_temperature, s.tool_top_p, s.tool_max_new_tokens, s.max_prompt_tokens,
             s.seed, s.limit] + ([s.frequency_penalty] if s.frequency_penalty else [])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def make_request(s: SynthConfig, snippet: Dict[str, Any], prompt: str) -> GenRequest:
    tool = is_tool(snippet["prompt_type"])
    return GenRequest(id=snippet["id"], prompt=prompt,
                      temperature=s.tool_temperature if tool else s.temperature,
                      top_p=s.tool_top_p if tool else s.top_p,
                      max_new_tokens=s.tool_max_new_tokens if tool else s.max_new_tokens,
                      seed=record_seed(s.seed, snippet["id"]),
                      stop=tuple(s.tool_stop if tool else s.stop),
                      frequency_penalty=s.frequency_penalty)


def _with_model(s: SynthConfig, model_path: Optional[str | Path]) -> SynthConfig:
    """`s` with the synthesizer folder to load (the argument wins over `s.model_path`)."""
    import dataclasses

    path = str(model_path) if model_path else s.model_path
    if not path:
        raise ValueError("synth.model_path: no synthesizer given (and no distill stage export)")
    return dataclasses.replace(s, model_path=path)


def synthesize_shard(s: SynthConfig, snippets_path: str | Path, out_dir: str | Path,
                     shard: Optional[int] = None, num_shards: Optional[int] = None,
                     generator: Optional[Generator] = None,
                     model_path: Optional[str | Path] = None) -> Dict[str, Any]:
    """Generate (or resume) one shard; returns its counts (also in `<shard>.done.json`).

    `shard`/`num_shards` None: SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (or 0 / 1)."""
    from jz3.prompts import PromptError, render_snippet

    check(s, "synth")
    t0 = time.time()
    if generator is None:
        s = _with_model(s, model_path)
    shard, num_shards = shard_from_env(shard, num_shards)
    store = ShardStore(out_dir, shard, num_shards)
    chash = shard_config_hash(s, s.model_path or model_path)
    info = store.done_info()
    if info is not None and info.get("config_hash") == chash:
        log.info("shard %s already complete: %s", store.name, info)
        return info
    store.check_config(chash)
    removed = store.clean_partial()
    done = store.done_ids()
    every = [(i, sn) for i, sn, dup in unique_snippets(snippets_path, s.limit) if not dup]
    if not every:
        raise RecordError(snippets_path, 0, "no snippet records (empty input)")
    mine = [sn for i, sn in every if i % num_shards == shard]
    todo = [sn for sn in mine if sn["id"] not in done]
    log.info("shard %s: %d snippets, %d already done (resumed), %d to generate%s", store.name,
             len(mine), len(mine) - len(todo), len(todo),
             f", removed {removed} partial chunk(s)" if removed else "")
    if todo and generator is None:
        generator = make_generator(s)
    model_name = getattr(generator, "model_name", str(s.model_path))
    bar = tqdm(total=len(todo), desc=f"synth {store.name}", unit="snip", mininterval=2)
    for start in range(0, len(todo), s.flush_every):
        batch = todo[start:start + s.flush_every]
        envs: List[Dict[str, Any]] = []
        reqs, prompts, snips = [], [], []
        for sn in batch:
            try:
                prompt = render_snippet(sn)
            except PromptError as e:
                envs.append(envelope(sn["id"], reason=f"render: {e}"))
                continue
            reqs.append(make_request(s, sn, prompt))
            prompts.append(prompt)
            snips.append(sn)
        results = generator.generate(reqs) if reqs else []  # type: ignore[union-attr]
        for sn, req, prompt, res in zip(snips, reqs, prompts, results, strict=True):
            rec, reason = to_synth_record(sn, req, prompt, res, model_name)
            extra = {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens}
            if rec is None:
                extra["completion"] = res.completion
            envs.append(envelope(sn["id"], rec, reason, extra=extra))
        store.commit_chunk(envs)
        bar.update(len(batch))
    bar.close()
    counts = _tally(store)
    counts.update(shard=shard, num_shards=num_shards, assigned=len(mine),
                  resumed=len(mine) - len(todo), generated=len(todo), config_hash=chash,
                  limit=s.limit, wall_s=round(time.time() - t0, 3))
    if counts["answered"] != len(mine):
        raise IncompleteSynthesis(f"shard {store.name}: {counts['answered']} answers for "
                                  f"{len(mine)} snippets")
    store.mark_done(counts)
    log.info("shard %s done: %d ok, %d failed in %.1fs", store.name, counts["ok"],
             counts["failed"], counts["wall_s"])
    return counts


def _tally(store: ShardStore) -> Dict[str, Any]:
    ids, reasons = set(), Counter()
    ok = failed = ptok = ctok = 0
    for e in store.envelopes():
        if e["snippet_id"] in ids:
            continue
        ids.add(e["snippet_id"])
        ok += e["status"] == OK
        failed += e["status"] == FAILED
        if e["status"] == FAILED:
            reasons[str(e["reason"]).split(":", 1)[0]] += 1
        ptok += e.get("prompt_tokens", 0) or 0
        ctok += e.get("completion_tokens", 0) or 0
    return {"answered": len(ids), "ok": ok, "failed": failed, "reasons": dict(reasons),
            "prompt_tokens": ptok, "completion_tokens": ctok}


def merge_shards(out_dir: str | Path, snippets_path: str | Path, num_shards: int,
                 limit: Optional[int] = None) -> SynthResult:
    """Verify completeness (no gap, no duplicate) and write the merged stage output."""
    t0 = time.time()
    if next(unique_snippets(snippets_path), None) is None:
        raise RecordError(snippets_path, 0, "no snippet records (empty input)")
    out = Path(out_dir)
    stores = [ShardStore(out, i, num_shards) for i in range(num_shards)]
    infos = [st.done_info() for st in stores]
    missing = [i for i, info in enumerate(infos) if info is None]
    if missing:
        raise IncompleteSynthesis(f"{out}: shard(s) {missing} of {num_shards} not finished; "
                                  f"rerun those array tasks (synth.num_shards={num_shards})")
    hashes = {info["config_hash"] for info in infos if info}
    if len(hashes) != 1:
        raise IncompleteSynthesis(f"{out}: shards were run with different configs {hashes}")
    limits = {info.get("limit") for info in infos if info}
    limit = limit if limit is not None else limits.pop() if len(limits) == 1 else None
    expected: Dict[str, int] = {}
    input_dups: List[Dict[str, Any]] = []
    for i, sn, dup in unique_snippets(snippets_path, limit):
        if dup:
            input_dups.append(sn)
        else:
            expected[sn["id"]] = i % num_shards
    seen: set = set()
    dup_envelopes, reasons = 0, Counter()
    ok = failed = 0
    with AtomicJsonlWriter(out / SYNTH_FILE) as good, AtomicJsonlWriter(out / REJECTED_FILE) as bad:
        for shard, st in enumerate(stores):
            for e in st.envelopes():
                sid = e["snippet_id"]
                if expected.get(sid) != shard:
                    good.abort()
                    bad.abort()
                    raise IncompleteSynthesis(
                        f"{st.dir}: snippet {sid!r} does not belong to shard {shard} of "
                        f"{num_shards} for input {snippets_path} (stale output or other input?)")
                if sid in seen:
                    dup_envelopes += 1
                    continue
                seen.add(sid)
                if e["status"] == OK:
                    good.write(e["record"])
                    ok += 1
                else:
                    bad.write({"reason": e["reason"], "snippet_id": sid, "stage": "synthesize",
                               "completion": e.get("completion")})
                    reasons[str(e["reason"]).split(":", 1)[0]] += 1
                    failed += 1
        for sn in input_dups:
            bad.write({"reason": "duplicate_snippet_id: same id earlier in the input",
                       "snippet_id": sn["id"], "stage": "synthesize", "record": sn})
        gap = [sid for sid in expected if sid not in seen]
        if gap:
            good.abort()
            bad.abort()
            raise IncompleteSynthesis(f"{out}: {len(gap)} snippet(s) never answered, e.g. "
                                      f"{gap[:5]}; rerun their shards")
    if dup_envelopes:
        log.warning("merge: dropped %d repeated answers (a task ran twice)", dup_envelopes)
    counts = {"snippets": len(expected), "ok": ok, "failed": failed, "reasons": dict(reasons),
              "duplicate_answers_dropped": dup_envelopes, "input_duplicate_ids": len(input_dups),
              "shards": num_shards,
              "prompt_tokens": sum(i["prompt_tokens"] for i in infos if i),
              "completion_tokens": sum(i["completion_tokens"] for i in infos if i)}
    counts["wall_s"] = round(time.time() - t0, 3)
    counts["shard_wall_s"] = [i["wall_s"] for i in infos if i]
    log.info("merged %d shards: %d ok, %d failed", num_shards, ok, failed)
    warnings = []
    if ok == 0:
        warnings.append(f"synthesize: 0 of {len(expected)} snippets gave a synth record "
                        f"({dict(reasons)}); see {out / REJECTED_FILE}")
        log.warning("%s", warnings[-1])
    return SynthResult(records=str(out / SYNTH_FILE), rejected=str(out / REJECTED_FILE),
                       snippets=len(expected), ok=ok, failed=failed, shards=num_shards,
                       stats=counts, warnings=warnings,
                       reasons={**reasons, **({"duplicate_snippet_id": len(input_dups)}
                                              if input_dups else {})})


def run_synthesize(s: SynthConfig, snippets_path: str | Path, out_dir: str | Path,
                   num_shards: int = 1, model_path: Optional[str | Path] = None,
                   generator: Optional[Generator] = None) -> SynthResult:
    """Every shard in this process (each resumable), then the merge."""
    for shard in range(num_shards):
        if ShardStore(out_dir, shard, num_shards).done_info() is None and generator is None:
            generator = make_generator(_with_model(s, model_path))
        synthesize_shard(s, snippets_path, out_dir, shard, num_shards, generator=generator,
                         model_path=model_path)
    return merge_shards(out_dir, snippets_path, num_shards, limit=s.limit)
