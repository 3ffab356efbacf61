"""Bad input at every stage: out-of-range settings name their key, empty inputs name their file,
decode errors name file:line, influence counts add up, and failed runs leave no temp file.

Unit-level calls only (no model training): each test asserts the message the user sees."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, List

import pytest

from jz3.config.data import DataConfig, DataSource, SnippetConfig, TokenizerConfig
from jz3.config.eval import EvalConfig, SandboxConfig
from jz3.config.influence import InfluenceConfig
from jz3.config.root import JZ3Config
from jz3.config.synth import FilterConfig, SynthConfig
from jz3.config.teacher import BudgetConfig, TeacherConfig
from jz3.config.validate import ConfigValueError, check
from jz3.data.records import RecordError, write_jsonl

BAD_UTF8 = b'{"id": "d2", "text": "caf\xe9", "source": "s"}\n'


def _snippet(i: int, pt: str = "grade_school") -> dict:
    return {"id": f"s{i}", "doc_id": f"d{i}", "text": f"Snippet {i}: a train leaves at {i} pm.",
            "source": "src", "prompt_type": pt}


def _leftovers(d: Path) -> List[str]:
    """Temp files under `d` (what an atomic write leaves when it is not cleaned up)."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")
                  if ".tmp" in p.name or p.name.endswith(("-wal", "-shm")))


# ---------------------------------------------------------------- range checks
def test_composed_config_names_the_full_key():
    from jz3.config import compose

    with pytest.raises(ConfigValueError, match=r"^stages\.kd_seed\.count must be >= 0, got -3$"):
        compose(["stages.kd_seed.count=-3"])


@pytest.mark.parametrize("path,value,message", [
    ("stages.kd_boost.teacher.concurrency", 0,
     "stages.kd_boost.teacher.concurrency must be >= 1, got 0"),
    ("stages.kd_seed.teacher.max_retries", -1,
     "stages.kd_seed.teacher.max_retries must be >= 0, got -1"),
    ("stages.kd_seed.teacher.budget.max_cost_usd", -0.5,
     "stages.kd_seed.teacher.budget.max_cost_usd must be >= 0, got -0.5"),
    ("stages.kd_seed.teacher.offline_top_k", 0,
     "stages.kd_seed.teacher.offline_top_k must be >= 1, got 0"),
    ("stages.influence.pool", -1, "stages.influence.pool must be >= 0, got -1"),
    ("stages.influence.influence.top_k", 0, "stages.influence.influence.top_k must be >= 1, got 0"),
    ("stages.influence.influence.num_shards", 0,
     "stages.influence.influence.num_shards must be >= 1, got 0"),
    ("stages.influence.influence.batch_size", 0,
     "stages.influence.influence.batch_size must be >= 1, got 0"),
    ("stages.influence.influence.max_len", 1, "stages.influence.influence.max_len must be >= 2, got 1"),
    ("stages.influence.influence.candidate_max", 0,
     "stages.influence.influence.candidate_max must be >= 1, got 0"),
    ("stages.influence.influence.lora.r", 0, "stages.influence.influence.lora.r must be >= 1, got 0"),
    ("stages.synthesize.shards", 0, "stages.synthesize.shards must be >= 1, got 0"),
    ("stages.synthesize.synth.batch_size", 0,
     "stages.synthesize.synth.batch_size must be >= 1, got 0"),
    ("stages.synthesize.synth.flush_every", 0,
     "stages.synthesize.synth.flush_every must be >= 1, got 0"),
    ("stages.synthesize.synth.limit", 0, "stages.synthesize.synth.limit must be >= 1, got 0"),
    ("stages.synthesize.synth.max_new_tokens", 0,
     "stages.synthesize.synth.max_new_tokens must be >= 1, got 0"),
    ("stages.filter.filter.workers", 0, "stages.filter.filter.workers must be >= 1, got 0"),
    ("stages.filter.filter.tool_workers", 0, "stages.filter.filter.tool_workers must be >= 1, got 0"),
    ("stages.filter.sandbox.workers", 0, "stages.filter.sandbox.workers must be >= 1, got 0"),
    ("stages.snippets.snippets.max_snippets", 0,
     "stages.snippets.snippets.max_snippets must be >= 1, got 0"),
    ("stages.pretrain.data.seq_len", 1, "stages.pretrain.data.seq_len must be >= 2, got 1"),
    ("stages.pretrain.data.num_workers", -1, "stages.pretrain.data.num_workers must be >= 0, got -1"),
    ("stages.pretrain.trainer.global_batch_size", 0,
     "stages.pretrain.trainer.global_batch_size must be >= 1, got 0"),
    ("stages.distill.trainer.max_steps", -2,
     "stages.distill.trainer.max_steps must be >= -1 (-1 = derive from epochs), got -2"),
    ("stages.sft.trainer.warmup_ratio", 1.5, "stages.sft.trainer.warmup_ratio must be in [0, 1], got 1.5"),
    ("stages.pretrain.deepspeed.zero_stage", 4,
     "stages.pretrain.deepspeed.zero_stage must be one of 0, 1, 2, 3, got 4"),
    ("stages.evaluate.eval.limit", 0, "stages.evaluate.eval.limit must be >= 1, got 0"),
    ("stages.evaluate.eval.num_samples", 0, "stages.evaluate.eval.num_samples must be >= 1, got 0"),
    ("stages.evaluate.eval.request_concurrency", 0,
     "stages.evaluate.eval.request_concurrency must be >= 1, got 0"),
    ("stages.evaluate.eval.sandbox.cpu_time_s", 0,
     "stages.evaluate.eval.sandbox.cpu_time_s must be >= 1, got 0"),
    ("stages.ablation.loss_eval.batch_size", 0,
     "stages.ablation.loss_eval.batch_size must be >= 1, got 0"),
    ("launcher.default.array", 0, "launcher.default.array must be >= 1, got 0"),
    ("pipeline.shard", -1, "pipeline.shard must be >= 0, got -1"),
])
def test_every_count_limit_and_budget_is_range_checked(path, value, message):
    cfg = JZ3Config()
    *parents, name = path.split(".")
    obj: Any = cfg
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, name, value)
    with pytest.raises(ConfigValueError) as e:
        check(cfg)
    assert str(e.value) == message


def test_cross_field_and_nested_ranges():
    cfg = JZ3Config()
    cfg.stages.filter.filter.min_problem_chars = 500
    cfg.stages.filter.filter.max_problem_chars = 100
    with pytest.raises(ConfigValueError, match=r"stages\.filter\.filter\.min_problem_chars must be "
                       r"<= stages\.filter\.filter\.max_problem_chars \(100\), got 500"):
        check(cfg)
    with pytest.raises(ConfigValueError, match=r"^influence\.shard must be < influence\.num_shards "
                       r"\(2\), got 2$"):
        check(InfluenceConfig(shard=2, num_shards=2), "influence")
    data = DataConfig(sources=[DataSource("a", "x.jsonl", 1.0), DataSource("b", "y.jsonl", -1.0)])
    with pytest.raises(ConfigValueError, match=r"^data\.sources\[1\]\.weight must be >= 0, got -1\.0$"):
        check(data, "data")
    cfg = JZ3Config()
    cfg.launcher.resources["synthesize"] = dataclasses.replace(cfg.launcher.default, nodes=0)
    with pytest.raises(ConfigValueError,
                       match=r"^launcher\.resources\.synthesize\.nodes must be >= 1, got 0$"):
        check(cfg)
    check(JZ3Config())  # the defaults pass


def test_teacher_runner_checks_its_config_before_any_request(tmp_path):
    from jz3.teacher.dispatch import TeacherRunner
    from jz3.teacher.journal import Journal

    with Journal(tmp_path / "j.sqlite") as j:
        for cfg, msg in [(TeacherConfig(concurrency=0), "teacher.concurrency must be >= 1, got 0"),
                         (TeacherConfig(max_retries=-1), "teacher.max_retries must be >= 0, got -1"),
                         (TeacherConfig(budget=BudgetConfig(max_calls=-5)),
                          "teacher.budget.max_calls must be >= 0, got -5")]:
            with pytest.raises(ValueError, match=f"^{msg}$"):
                TeacherRunner(object(), j, cfg)  # type: ignore[arg-type]


def test_stage_functions_check_their_own_sections(tmp_path):
    from jz3.eval.run import run_evaluation
    from jz3.synth.filter import run_filter
    from jz3.synth.run import synthesize_shard

    with pytest.raises(ConfigValueError, match=r"^filter\.workers must be >= 1, got 0$"):
        run_filter(FilterConfig(workers=0), SandboxConfig(), tmp_path / "x.jsonl", tmp_path / "f")
    with pytest.raises(ConfigValueError, match=r"^sandbox\.max_procs must be >= 1, got 0$"):
        run_filter(FilterConfig(), SandboxConfig(max_procs=0), tmp_path / "x.jsonl", tmp_path / "f")
    with pytest.raises(ConfigValueError, match=r"^synth\.flush_every must be >= 1, got 0$"):
        synthesize_shard(SynthConfig(flush_every=0), tmp_path / "x.jsonl", tmp_path / "s", 0, 1,
                         generator=_Gen())
    with pytest.raises(ConfigValueError, match=r"^eval\.batch_size must be >= 1, got 0$"):
        run_evaluation(EvalConfig(batch_size=0), "m", tmp_path / "e", generator=_Gen())
    with pytest.raises(ConfigValueError, match=r"^snippets\.size must be >= 1, got 0$"):
        from jz3.data.snippets import make_snippets

        make_snippets(SnippetConfig(corpus=["x"], size=0), None, tmp_path / "s.jsonl")


# ---------------------------------------------------------------- empty inputs, decode errors
def test_snippets_empty_corpus_and_bad_lines(tmp_path):
    from jz3.data.snippets import make_snippets

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n")
    with pytest.raises(RecordError, match=f"^{corpus}: snippets.corpus: no corpus records "
                       r"\(empty input\)$"):
        make_snippets(SnippetConfig(corpus=[str(corpus)]), None, tmp_path / "out" / "s.jsonl")
    corpus.write_bytes(b"\n" + BAD_UTF8)  # the only record is undecodable: line 2
    with pytest.raises(RecordError, match=r"no corpus records \(empty input; 1 bad lines, see "):
        make_snippets(SnippetConfig(corpus=[str(corpus)]), None, tmp_path / "out" / "s.jsonl")
    rej = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"], r["reason"]) for r in rej] == [
        (str(corpus), 2, "invalid UTF-8 at byte 25")]
    corpus.write_text(json.dumps({"id": "d", "text": "too short", "source": "s"}) + "\n")
    with pytest.raises(RecordError, match=r"1 documents gave no snippet \(1 pieces shorter than "
                       r"snippets.min_size=200"):
        make_snippets(SnippetConfig(corpus=[str(corpus)]), None, tmp_path / "out" / "s.jsonl")
    assert _leftovers(tmp_path) == []
    with pytest.raises(RecordError, match=f"^{tmp_path / 'none'}/\\*.jsonl: no file matches"):
        make_snippets(SnippetConfig(corpus=[str(tmp_path / "none" / "*.jsonl")]), None,
                      tmp_path / "out" / "s.jsonl")


def test_kd_empty_snippets_empty_ids_and_decode_error(tmp_path):
    from jz3.teacher.kd import build_kd, run_kd

    snippets = tmp_path / "snippets.jsonl"
    snippets.write_text("")
    tcfg = TeacherConfig(journal=str(tmp_path / "journal.sqlite"))
    with pytest.raises(RecordError, match=f"^{snippets}: no snippet records \\(empty input\\)$"):
        build_kd(tcfg, snippets, tmp_path / "kd")
    with pytest.raises(ValueError, match=r"^kd: no snippet ids to send to the teacher"):
        run_kd(tcfg, snippets, tmp_path / "kd", [])
    snippets.write_bytes(json.dumps(_snippet(1)).encode() + b"\n" + BAD_UTF8)
    with pytest.raises(RecordError, match=f"^{snippets}:2: invalid UTF-8 at byte 25$"):
        build_kd(tcfg, snippets, tmp_path / "kd")
    assert _leftovers(tmp_path) == []


class _Backend:
    """A teacher whose every answer is unparseable, or that dies after `die_after` answers."""

    name, billable = "fake-teacher", False

    def __init__(self, die_after: int = -1):
        self.n, self.die_after = 0, die_after

    async def send(self, req, params, timeout_s):
        from jz3.teacher.types import TeacherResponse

        self.n += 1
        if self.n == self.die_after:
            raise RuntimeError("injected teacher crash")
        return TeacherResponse(text="no problem here", model=self.name, usage={})

    async def aclose(self):
        pass


def test_kd_that_yields_nothing_fails_and_a_crash_leaves_no_temp_file(tmp_path):
    from jz3.teacher.kd import run_kd

    snippets = tmp_path / "snippets.jsonl"
    write_jsonl(snippets, [_snippet(i) for i in range(4)])
    tcfg = TeacherConfig(journal=str(tmp_path / "journal.sqlite"), concurrency=2)
    from jz3.errors import StageFailed

    with pytest.raises(StageFailed, match=r"^kd: 0 of 4 requested snippets gave a kd record "
                                          r"\(4 answered by the offline teacher; rejected "
                                          r"\{'parse_"):
        run_kd(tcfg, snippets, tmp_path / "kd", ["s0", "s1", "s2", "s3"], backend=_Backend())
    assert len((tmp_path / "kd" / "rejected.jsonl").read_text().splitlines()) == 4
    tcfg = dataclasses.replace(tcfg, journal=str(tmp_path / "journal2.sqlite"))
    with pytest.raises(RuntimeError, match="injected teacher crash"):
        run_kd(tcfg, snippets, tmp_path / "kd2", ["s0", "s1", "s2", "s3"],
               backend=_Backend(die_after=3))
    assert sorted(p.name for p in (tmp_path / "kd2").iterdir()) == ["requested_ids.json"]
    assert _leftovers(tmp_path) == []  # no .tmp, and the journal's WAL is checkpointed away


class _Gen:
    """A synthesizer stand-in: `text` for every request; raises on call `die_at` (1-based)."""

    name = model_name = "fake-synth"

    def __init__(self, text: str = "no structure at all", die_at: int = -1):
        self.text, self.die_at, self.calls = text, die_at, 0

    def generate(self, reqs):
        from jz3.generation import GenResult

        self.calls += 1
        if self.calls == self.die_at:
            raise RuntimeError("injected generator crash")
        return [GenResult(r.id, self.text, 10, 5, "stop") for r in reqs]


def test_synthesis_empty_input_all_failed_warning_and_no_temp_chunk(tmp_path, monkeypatch):
    from jz3.synth import shard_store
    from jz3.synth.run import merge_shards, run_synthesize, synthesize_shard

    s = SynthConfig(model_path="fake", flush_every=2)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(RecordError, match=f"^{empty}: no snippet records \\(empty input\\)$"):
        synthesize_shard(s, empty, tmp_path / "e", 0, 1, generator=_Gen())
    with pytest.raises(RecordError, match=f"^{empty}: no snippet records \\(empty input\\)$"):
        merge_shards(tmp_path / "e", empty, 1)
    snippets = tmp_path / "snippets.jsonl"
    write_jsonl(snippets, [_snippet(i) for i in range(5)])
    res = run_synthesize(s, snippets, tmp_path / "all_failed", 2, generator=_Gen())
    assert (res.ok, res.failed) == (0, 5)
    assert res.warnings and res.warnings[0].startswith("synthesize: 0 of 5 snippets gave a synth")
    # a crash while a chunk is being written leaves no temp chunk; committed chunks stay
    real_write = shard_store.AtomicJsonlWriter.write
    n = {"w": 0}

    def failing_write(self, rec):
        n["w"] += 1
        if n["w"] == 3:
            raise OSError("injected: disk full")
        real_write(self, rec)

    monkeypatch.setattr(shard_store.AtomicJsonlWriter, "write", failing_write)
    with pytest.raises(OSError, match="injected: disk full"):
        synthesize_shard(s, snippets, tmp_path / "crash", 0, 1, generator=_Gen())
    assert _leftovers(tmp_path / "crash") == []
    assert len(list((tmp_path / "crash" / "shards").rglob("chunk-*.jsonl"))) == 1
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="injected generator crash"):
        synthesize_shard(s, snippets, tmp_path / "crash2", 0, 1, generator=_Gen(die_at=2))
    assert _leftovers(tmp_path / "crash2") == []


def _synth_record(i: int, problem: str = "x") -> dict:
    return {"id": f"r{i}", "snippet_id": f"s{i}", "prompt_type": "grade_school", "prompt": "p",
            "completion": "c", "problem": problem, "solution": "s", "model": "m"}


def test_filter_empty_input_is_an_error_and_rejecting_everything_a_warning(tmp_path):
    from jz3.synth.filter import run_filter

    fc = FilterConfig(verify_tool=False, workers=1, dedup_near=False)
    empty = tmp_path / "synth.jsonl"
    empty.write_text("")
    with pytest.raises(RecordError, match=f"^{empty}: no synth records \\(empty input\\)$"):
        run_filter(fc, SandboxConfig(), empty, tmp_path / "f")
    folder = tmp_path / "shards"
    folder.mkdir()
    with pytest.raises(RecordError, match=f"^{folder}: no synth records \\(empty input\\)$"):
        run_filter(fc, SandboxConfig(), folder, tmp_path / "f")
    assert _leftovers(tmp_path) == []
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(_synth_record(1)).encode() + b"\n\n" + b"{oops\n" + BAD_UTF8)
    res = run_filter(fc, SandboxConfig(), bad, tmp_path / "f")
    assert (res.read, res.kept) == (3, 0)
    assert res.warnings == [f"filter: kept 0 of 3 records {res.stats['reasons']}; see "
                            f"{tmp_path / 'f' / 'rejected.jsonl'}"]
    rej = [json.loads(x) for x in Path(res.rejected).read_text().splitlines()]
    assert sorted((r.get("file"), r.get("line"), r["reason"].split(":")[0]) for r in rej
                  if r.get("line")) == [(str(bad), 3, "malformed JSON"),
                                        (str(bad), 4, "invalid UTF-8 at byte 25")]


def test_pack_empty_source_decode_error_and_no_temp_files(tmp_path, tiny_tokenizer):
    from jz3.config.enums import OnError
    from jz3.data.packing import pack_sources

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    cfg = DataConfig(sources=[DataSource("e", str(empty), 1.0)], num_workers=0)
    with pytest.raises(RecordError, match=f"^{empty}: data source 'e': no records \\(empty input\\)$"):
        pack_sources(cfg, tiny_tokenizer, tmp_path / "p")
    (tmp_path / "dir").mkdir()
    cfg = DataConfig(sources=[DataSource("d", str(tmp_path / "dir"), 1.0)], num_workers=0)
    with pytest.raises(RecordError, match=f"^{tmp_path / 'dir'}: data source 'd': no record files"):
        pack_sources(cfg, tiny_tokenizer, tmp_path / "p")
    src = tmp_path / "src.jsonl"
    src.write_bytes(b"".join(json.dumps({"text": f"doc {i} " * 50}).encode() + b"\n"
                             for i in range(300)) + BAD_UTF8)
    cfg = DataConfig(sources=[DataSource("s", str(src), 1.0)], num_workers=0)
    with pytest.raises(RecordError, match=f"^{src}:301: invalid UTF-8 at byte 25$"):
        pack_sources(cfg, tiny_tokenizer, tmp_path / "p")
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "p" / "s" / "tokens.bin").exists()
    src.write_bytes(BAD_UTF8)  # quarantined: nothing usable is left
    cfg = DataConfig(sources=[DataSource("s", str(src), 1.0)], num_workers=0,
                     on_error=OnError.quarantine)
    with pytest.raises(RecordError, match=f"^{src}: data source 's': no usable record \\(1 rejected"):
        pack_sources(cfg, tiny_tokenizer, tmp_path / "p")
    assert _leftovers(tmp_path) == []
    with pytest.raises(ConfigValueError, match=r"^data\.seq_len must be >= 2, got 0$"):
        pack_sources(dataclasses.replace(cfg, seq_len=0), tiny_tokenizer, tmp_path / "p")


def test_evaluation_empty_benchmark_file_is_an_error(tmp_path):
    from jz3.benchmarks import BenchmarkFormatError, load_benchmark
    from jz3.eval.run import EmptyBenchmark, run_evaluation

    f = tmp_path / "data" / "gsm8k" / "test.jsonl"
    f.parent.mkdir(parents=True)
    f.write_text("\n")
    cfg = EvalConfig(data_dir=str(tmp_path / "data"), benchmarks=["gsm8k"], settings=["cot"])
    with pytest.raises(EmptyBenchmark, match=f"^benchmark gsm8k: no items in {f}$"):
        run_evaluation(cfg, "m", tmp_path / "out", generator=_Gen())
    f.write_bytes(json.dumps({"question": "q", "answer": "#### 1", "idx": 0}).encode() + b"\n"
                  + BAD_UTF8)
    with pytest.raises(BenchmarkFormatError, match=f"^{f}:2: invalid UTF-8"):
        load_benchmark("gsm8k", tmp_path / "data")
    with pytest.raises(ValueError, match=r"^eval\.benchmarks and eval\.settings must be non-empty"):
        run_evaluation(dataclasses.replace(cfg, benchmarks=[]), "m", tmp_path / "out",
                       generator=_Gen())


def test_release_kd_file_decode_errors_name_the_line(tmp_path):
    from jz3.synth.parse import read_release_kd
    from jz3.teacher.kd import import_kd

    f = tmp_path / "release.jsonl"
    f.write_bytes(b"\n" + b'{"input": "caf\xe9"}\n' + b"{not json\n")
    good, bad = read_release_kd(f)
    assert good == []
    assert [(b["line"], b["reason"]) for b in bad] == [
        (2, "invalid UTF-8 at byte 14 of the line"),
        (3, "malformed JSON: Expecting property name enclosed in double quotes at column 2")]
    res = import_kd(f, tmp_path / "kd")  # nothing usable: a warning and the manifest flag
    assert res.written == 0 and res.rejected_count == 2 and len(res.warnings) == 1
    f.write_text("\n\n")
    with pytest.raises(RecordError, match=f"^{f}: kd from_file: no rows \\(empty input\\)$"):
        import_kd(f, tmp_path / "kd")


# ---------------------------------------------------------------- influence
def test_influence_rejected_lines_are_exact_and_counts_add_up(tmp_path):
    from jz3.influence.examples import load_targets
    from jz3.influence.run import load_candidates

    f = tmp_path / "cands.jsonl"
    lines = [
        json.dumps({"id": "a", "prompt": "p", "completion": "c"}).encode(),  # 1 ok
        b"",  # 2 blank: not a record
        b"{broken",  # 3 malformed
        json.dumps({"id": "b", "input": "i", "output": "o"}).encode(),  # 4 ok
        json.dumps({"id": "c", "nothing": 1}).encode(),  # 5 unusable
        json.dumps({"id": "a", "text": "t"}).encode(),  # 6 duplicate id
        b'{"id": "d", "text": "caf\xe9"}',  # 7 invalid UTF-8
        b"[1, 2]",  # 8 not an object
        b"   ",  # 9 blank
        json.dumps({"id": "e", "text": "t"}).encode(),  # 10 ok
    ]
    f.write_bytes(b"\n".join(lines) + b"\n")
    examples, counts = load_candidates(f, tmp_path / "rejected.jsonl")
    assert [e.id for e in examples] == ["a", "b", "e"]
    rej = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(":")[0].split(" (")[0]) for r in rej] == [
        (3, "malformed JSON"), (5, "unusable record"), (6, "duplicate id 'a'"),
        (7, "invalid UTF-8 at byte 24"), (8, "not a JSON object")]
    assert all(r["file"] == str(f) for r in rej)
    assert "first at " + f"{f}:1" in rej[2]["reason"]
    assert (counts.read, counts.used, counts.rejected) == (8, 3, 5)
    assert counts.read == counts.used + counts.rejected == len(examples) + len(rej)
    # a limit stops reading: the lines after it are neither read nor rejected
    ex2, c2 = load_candidates(f, tmp_path / "rejected2.jsonl", limit=2)
    assert len(ex2) == 2 and c2.beyond_limit and c2.read == c2.used + c2.rejected == 3
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(RecordError, match=f"^{empty}: no usable candidate records$"):
        load_candidates(empty, tmp_path / "rejected3.jsonl")
    with pytest.raises(RecordError, match=f"^{empty}: no target examples \\(empty input\\)$"):
        load_targets([empty])


# ---------------------------------------------------------------- temp files after failures
def test_atomic_writers_leave_nothing_behind_on_failure(tmp_path, monkeypatch):
    from jz3.data import records

    def boom(*a, **k):
        raise OSError("injected: rename failed")

    monkeypatch.setattr(records.os, "replace", boom)
    with pytest.raises(OSError, match="injected"):
        records.atomic_write_text(tmp_path / "m.json", "{}")
    with pytest.raises(OSError, match="injected"):
        records.write_jsonl(tmp_path / "r.jsonl", [{"a": 1}])
    with pytest.raises(OSError, match="injected"):
        records.write_parquet(tmp_path / "r.parquet", [{"a": 1}])
    assert list(tmp_path.iterdir()) == []


class _Engine:
    kind = type("K", (), {"value": "torch"})()

    def save(self, path: Path) -> None:
        (path / "engine_state.pt").write_bytes(b"partial")
        raise OSError("injected: disk full during checkpoint save")


def test_failed_checkpoint_save_and_hf_export_leave_nothing(tmp_path):
    from jz3.parallel.dist import DistInfo
    from jz3.train import checkpoint as ckpt
    from jz3.train.callbacks import CallbackList, TrainState
    from jz3.train.trainer import Trainer

    state = TrainState(step=10, dist=DistInfo(), output_dir=tmp_path)
    tr = Trainer(_Engine(), None, state, CallbackList(), grad_accum=1, global_batch=1,  # type: ignore[arg-type]
                 seq_len=8, attn_impl="sdpa", tp_size=1, save_every=5, keep_last=2,
                 flops_per_token=1.0, peak_flops=None)
    with pytest.raises(OSError, match="injected: disk full"):
        tr.save()
    assert not ckpt.step_dir(tmp_path, 10).exists() and ckpt.latest_checkpoint(tmp_path) is None

    from jz3.config.enums import Precision
    from jz3.train.entry import export_hf

    class Model:
        config = type("C", (), {"use_cache": False})()

        def save_pretrained(self, path, state_dict=None):
            Path(path, "model.safetensors").write_bytes(b"partial")
            raise OSError("injected: export failed")

    engine = type("E", (), {"full_state_dict": lambda self: {}, "module": Model()})()
    with pytest.raises(OSError, match="injected: export failed"):
        export_hf(engine, None, tmp_path / "train" / "hf", Precision.fp32, DistInfo())
    assert sorted(os.listdir(tmp_path / "train")) == []


def test_manifest_carries_stage_warnings(tmp_path):
    from jz3.pipeline.runner import StageResult, _manifest_extra
    from jz3.synth.filter import FilterResult

    res = StageResult(result=FilterResult("c", "t", "r", warnings=["filter: kept 0 of 3"]),
                      warnings=["pack: x"])
    assert _manifest_extra(res, TokenizerConfig())["warnings"] == ["pack: x", "filter: kept 0 of 3"]
    assert "warnings" not in _manifest_extra(StageResult(result=FilterResult("c", "t", "r")),
                                             TokenizerConfig())
