"""The influence stage of the recipe: the seed synthesizer writes for a pool of random non-seed
snippets, and LESS ranks what it wrote.

`resolve_section(sec, synthesizer)` fills the values the section derives from the seed
synthesizer's folder (the pipeline shows them in its plan); `run_influence_stage(sec, ...)` then
runs on that section as given: pool sampling, pool synthesis, one candidate per pool snippet,
the LESS warmup and ranking (`jz3.influence.run`), and the selected snippet ids.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

from jz3.config.enums import TokenizerKind
from jz3.config.stages import InfluenceStage
from jz3.data.records import (
    AtomicJsonlWriter,
    Stats,
    atomic_write_text,
    count_lines,
    read_records,
    scalar_stats,
    write_jsonl,
)

log = logging.getLogger(__name__)
POOL = "pool_snippets.jsonl"
CANDIDATES = "candidates.jsonl"
SELECTED = "selected_snippets.json"


@dataclasses.dataclass
class InfluenceStageResult:
    """The influence stage: pool, candidates, ranking, and the snippet ids it selected."""

    pool: str  # pool_snippets.jsonl
    candidates: str  # candidates.jsonl (prompt + the seed synthesizer's completion)
    selected_snippets: str  # selected_snippets.json: snippet ids, best first
    scores: str  # influence/scores.jsonl
    selected: int = 0
    counts: Dict[str, int] = dataclasses.field(default_factory=dict)
    influence: Stats = dataclasses.field(default_factory=dict)  # the LESS run's numbers


@dataclasses.dataclass
class InfluenceStageRun:
    """`run_influence_stage`'s outcome: the typed result, and what the report plots."""

    result: InfluenceStageResult
    candidates: Dict[str, int]  # candidates, parsed, no_completion (or: used)
    scores: List[float]  # every candidate's score, in scores.jsonl order
    pool_synth: Stats  # the pool synthesis' stats
    influence: Dict[str, int]  # the LESS run's counts


def resolve_section(sec: InfluenceStage, synthesizer: Optional[str]) -> InfluenceStage:
    """`sec` with the values it derives from the seed synthesizer's folder (`synthesizer`; None
    when `influence.candidates` are ranked and nothing is synthesized): the pool's synthesizer
    (`synth.model_path`) sampling for every pool snippet (`synth.limit` None: the pool size is
    the limit), the LESS warmup on it when `model.path` is empty, and an HF tokenizer without a
    path from `model.path`."""
    synth, model, data = sec.synth, sec.model, sec.data
    if synthesizer is not None:
        synth = dataclasses.replace(synth, model_path=synthesizer, limit=None)
        if not model.path:
            model = dataclasses.replace(model, path=synthesizer)
    if data.tokenizer.kind == TokenizerKind.hf and not data.tokenizer.path and model.path:
        data = dataclasses.replace(data, tokenizer=dataclasses.replace(data.tokenizer,
                                                                        path=model.path))
    return dataclasses.replace(sec, synth=synth, model=model, data=data)


def influence_candidates(pool: Path, synth_records: Path, synth_rejected: Path,
                         out: Path) -> Dict[str, int]:
    """One candidate per pool snippet: its prompt and the seed synthesizer's raw completion.

    Parsed or not: influence measures what training on this snippet's synthetic text does, and
    a tiny synthesizer parses few of its outputs. Candidate id = snippet id. Snippets without
    any completion go to `candidates_rejected.jsonl` with the reason."""
    from jz3.prompts import render_snippet

    comp: Dict[str, tuple] = {}
    for r in read_records(synth_records):
        comp[r["snippet_id"]] = (r["completion"], True)
    if synth_rejected.exists():
        for r in read_records(synth_rejected):
            if r.get("completion"):
                comp.setdefault(r["snippet_id"], (r["completion"], False))
    n = {"candidates": 0, "parsed": 0, "no_completion": 0}
    with AtomicJsonlWriter(out / CANDIDATES) as w, \
            AtomicJsonlWriter(out / "candidates_rejected.jsonl") as bad:
        for sn in read_records(pool):
            c = comp.get(sn["id"])
            if c is None or not c[0].strip():
                bad.write({"reason": "no_completion: the synthesizer wrote nothing usable",
                           "snippet_id": sn["id"]})
                n["no_completion"] += 1
                continue
            w.write({"id": sn["id"], "snippet_id": sn["id"], "prompt_type": sn["prompt_type"],
                     "prompt": render_snippet(sn), "completion": c[0],
                     "parsed": c[1]})
            n["candidates"] += 1
            n["parsed"] += int(c[1])
    return n


def run_influence_stage(sec: InfluenceStage, snippets: Optional[Path],
                        seed_ids: Optional[Path], out: Path) -> InfluenceStageRun:
    """The influence stage on its resolved section (`resolve_section`), writing under `out`.

    With `influence.candidates` those records are ranked (`snippets`, `seed_ids` unused).
    Otherwise `pool` snippets of `snippets` drawn at random (seeded) outside the kd seed ids
    (`seed_ids`, a JSON list) are written for by `synth.model_path`, and ranked."""
    from jz3.data.snippets import sample_ids
    from jz3.influence.run import run_influence
    from jz3.synth.run import run_synthesize

    cn: Dict[str, int] = {}
    synth_stats: Dict[str, Any] = {}
    pool_file = out / POOL
    if sec.influence.candidates:
        cands: Any = sec.influence.candidates
        write_jsonl(pool_file, [])
    else:
        if snippets is None or seed_ids is None:
            raise ValueError("influence: no snippets / kd seed ids to draw the pool from (and no "
                             "influence.candidates)")
        if not pool_file.exists():
            exclude = json.loads(Path(seed_ids).read_text("utf-8"))
            want = set(sample_ids(snippets, sec.pool, sec.seed, exclude=exclude))
            write_jsonl(pool_file, (r for r in read_records(snippets) if r["id"] in want))
        sres = run_synthesize(sec.synth, pool_file, out / "pool_synth", 1)
        synth_stats = scalar_stats(sres.stats)
        cn = influence_candidates(pool_file, Path(sres.records), Path(sres.rejected), out)
        cands = out / CANDIDATES
    res = run_influence(seed=sec.seed, model=sec.model, trainer=sec.trainer,
                        deepspeed=sec.deepspeed, data=sec.data, influence=sec.influence,
                        candidates=cands, out_dir=out / "influence")
    sel = [r["id"] for r in read_records(Path(res.selected_path))] if res.selected_path else []
    snippet_ids = list(dict.fromkeys(str(s) for s in sel))
    sel_file = out / SELECTED
    atomic_write_text(sel_file, json.dumps(snippet_ids))
    scores = ([float(r["score"]) for r in read_records(Path(res.scores_path))]
              if res.scores_path and Path(res.scores_path).exists() else [])
    if not cn:
        cn = {"candidates": res.candidates.used}
    counts = {"pool": count_lines(pool_file), **cn, "selected": len(snippet_ids)}
    result = InfluenceStageResult(pool=str(pool_file), candidates=str(cands),
                                  selected_snippets=str(sel_file),
                                  scores=str(res.scores_path or ""), selected=len(snippet_ids),
                                  counts=counts, influence=scalar_stats(res))
    return InfluenceStageRun(result, cn, scores, synth_stats, res.counts())
