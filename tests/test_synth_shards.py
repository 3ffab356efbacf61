"""Sharded, resumable synthesis and the merge that proves completeness (in-process)."""

from __future__ import annotations

import pytest

from jz3.config import compose
from jz3.data.records import read_records
from jz3.generation import GenRequest, GenResult
from jz3.synth.generator import make_generator
from jz3.synth.records import to_synth_record
from jz3.synth.run import IncompleteSynthesis, merge_shards, synthesize_shard
from jz3.synth.shard_store import ShardStore
from tests.synth_fixtures import (  # noqa: F401
    jiuzhang_synth_records,
    snippets_file,
    tiny_synthesizer,
)


class Crash(RuntimeError):
    pass


class CrashAfter:
    """Wraps a real generator; raises (like a killed task) after `n` generate calls."""

    def __init__(self, inner, n):
        self.inner, self.n, self.model_name = inner, n, inner.model_name

    def generate(self, reqs):
        if self.n == 0:
            raise Crash("task killed")
        self.n -= 1
        return self.inner.generate(reqs)


def _cfg(model, out, **kw):
    """The synthesize stage's `synth` section (preset tiny) with these settings."""
    p = "stages.synthesize.synth"
    over = [f"{p}.model_path={model}", f"{p}.max_new_tokens=6", f"{p}.flush_every=2",
            f"{p}.batch_size=4", f"run_dir={out}"] + [f"{p}.{k}={v}" for k, v in kw.items()]
    return compose(["synth@stages.synthesize.synth=tiny"] + over).stages.synthesize.synth


def _ids(path):
    return [r["id"] for r in read_records(path)]


@pytest.mark.slow
def test_shards_resume_and_merge_complete(tiny_synthesizer, snippets_file, tmp_path):  # noqa: F811
    cfg = _cfg(tiny_synthesizer, tmp_path)
    out = tmp_path / "synth"
    gen = make_generator(cfg)
    snippet_ids = _ids(snippets_file)
    # shard 1 of 3 dies after its first committed chunk
    with pytest.raises(Crash):
        synthesize_shard(cfg, snippets_file, out, 1, 3, generator=CrashAfter(gen, 1))
    store = ShardStore(out, 1, 3)
    assert len(store.chunks()) == 1 and store.done_info() is None
    for shard in (0, 2):
        synthesize_shard(cfg, snippets_file, out, shard, 3, generator=gen)
    with pytest.raises(IncompleteSynthesis, match=r"shard\(s\) \[1\]"):
        merge_shards(out, snippets_file, 3)
    first_pass = {e["snippet_id"]: e for e in store.envelopes()}
    stats = synthesize_shard(cfg, snippets_file, out, 1, 3, generator=gen)
    assert stats["resumed"] == 2 and stats["generated"] == stats["assigned"] - 2
    merged = merge_shards(out, snippets_file, 3)
    assert merged.snippets == len(snippet_ids) == merged.ok + merged.failed
    assert merged.records == str(out / "synth.jsonl") and merged.stats["shards"] == 3
    answered = [r["snippet_id"] for r in read_records(out / "synth.jsonl")]
    answered += [r["snippet_id"] for r in read_records(out / "rejected.jsonl")]
    assert sorted(answered) == sorted(snippet_ids)  # no gap, no duplicate
    rejected = list(read_records(out / "rejected.jsonl"))
    assert all(r["reason"] for r in rejected)
    assert not (out / "manifest.json").exists()  # provenance is the pipeline runner's
    # a rerun of a finished shard does nothing; reruns reproduce the same completions
    again = synthesize_shard(cfg, snippets_file, out, 1, 3, generator=gen)
    assert again["generated"] == stats["generated"]
    fresh = tmp_path / "fresh"
    synthesize_shard(cfg, snippets_file, fresh, 1, 3, generator=gen)
    redo = {e["snippet_id"]: e for e in ShardStore(fresh, 1, 3).envelopes()}
    for sid, e in first_pass.items():
        assert redo[sid]["completion"] == e["completion"]


def test_resuming_under_another_config_is_refused(tiny_synthesizer, snippets_file, tmp_path):  # noqa: F811
    out = tmp_path / "synth"
    cfg = _cfg(tiny_synthesizer, tmp_path, limit=4)
    synthesize_shard(cfg, snippets_file, out, 0, 2)
    other = _cfg(tiny_synthesizer, tmp_path, limit=4, temperature=0.5)
    with pytest.raises(ValueError, match="written with config"):
        synthesize_shard(other, snippets_file, out, 0, 2)


def test_merge_detects_a_gap(tiny_synthesizer, snippets_file, tmp_path):  # noqa: F811
    cfg = _cfg(tiny_synthesizer, tmp_path, limit=6)
    out = tmp_path / "synth"
    for shard in (0, 1):
        synthesize_shard(cfg, snippets_file, out, shard, 2)
    chunk = ShardStore(out, 1, 2).chunks()[0]
    lines = chunk.read_text().splitlines()
    chunk.write_text("\n".join(lines[1:]) + "\n")  # lose one committed answer
    with pytest.raises(IncompleteSynthesis, match="never answered"):
        merge_shards(out, snippets_file, 2)
    assert not (out / "synth.jsonl").exists() and not (out / "manifest.json").exists()


def test_completion_to_synth_record_ok_and_failures(shared_data):
    recs = jiuzhang_synth_records(shared_data, "tool", 1)
    completion = recs[0]["completion"]
    snip = {"id": "s1", "prompt_type": "tool", "text": "t"}
    req = GenRequest("s1", "PROMPT", 0.1, 0.95, 100, seed=7)
    rec, reason = to_synth_record(snip, req, "PROMPT",
                                  GenResult("s1", completion, 10, 50, "stop"), "m")
    assert reason is None and rec["problem"] == recs[0]["problem"] and rec["code"]
    assert rec["id"] == "syn-s1" and rec["usage"]["seed"] == 7
    rec, reason = to_synth_record(snip, req, "PROMPT",
                                  GenResult("s1", completion, 10, 100, "length"), "m")
    assert rec is None and reason.startswith("truncated")
    rec, reason = to_synth_record(snip, req, "PROMPT",
                                  GenResult("s1", "no headers at all", 10, 5, "stop"), "m")
    assert rec is None and reason.startswith("parse:")
