"""`stages.kd_seed.from_file`: the KD stage imports an existing release-format KD set instead of
calling the teacher; the distill stage trains on what it wrote."""

from __future__ import annotations

import json

from jz3.config import compose
from jz3.data.packing import to_train_example
from jz3.pipeline.pipeline import run_single
from jz3.pipeline.runner import StageOutput, plan_lines, read_manifest, stage_dir
from jz3.pipeline.stages import STAGES
from tests.test_parse import RELEASE_ROWS


def test_kd_seed_from_a_release_file_calls_no_teacher(tmp_path):
    src = tmp_path / "release_kd.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in RELEASE_ROWS) + "\n")
    run = tmp_path / "run"
    cfg = compose(["+exp=tiny_pipeline", f"run_dir={run}", f"stages.kd_seed.from_file={src}",
                   "stages.kd_seed.teacher.kind=openai",  # would fail without an endpoint
                   "stages.kd_seed.teacher.base_url=http://127.0.0.1:9/v1"])
    plan = {ln.split(" ", 2)[1]: json.loads(ln.split(" ", 2)[2]) for ln in plan_lines(cfg, STAGES)}
    assert plan["kd_seed"]["inputs"] == []  # no snippets stage needed
    assert plan["kd_seed"]["config"]["from_file"] == str(src)

    assert run_single(cfg, "kd_seed")["status"] == "ran"  # as launch/kd.py runs it
    d = stage_dir(cfg, "kd_seed")
    m = read_manifest(d)
    assert m["counts"] == {"in": 5, "out": 3, "rejected": 2}
    assert m["metrics"]["from_file"] == str(src) and len(m["metrics"]["sha256"]) == 64
    assert not (run / "teacher_journal.sqlite").exists()
    res = StageOutput("kd_seed", d, m).result
    kd = [json.loads(x) for x in open(res.kd, encoding="utf-8")]
    assert [r["prompt_type"] for r in kd] == ["middle_school", "grade_school", "tool"]
    for r in kd:  # what distill trains on: prompt -> completion
        ex = to_train_example(r)
        assert ex["input"] == r["prompt"] and ex["output"].startswith("## Question\n")
    rejected = [json.loads(x) for x in open(res.rejected, encoding="utf-8")]
    assert [r["line"] for r in rejected] == [4, 5]
    assert json.loads(open(res.ids, encoding="utf-8").read()) == [r["snippet_id"] for r in kd]
    # cached on a rerun; a different file is a different stage key
    assert run_single(cfg, "kd_seed")["status"] == "cached"
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(RELEASE_ROWS[0]) + "\n")
    cfg2 = compose(["+exp=tiny_pipeline", f"run_dir={run}", f"stages.kd_seed.from_file={other}"])
    assert run_single(cfg2, "kd_seed")["status"] == "ran"
    assert read_manifest(d)["counts"]["out"] == 1


def test_missing_kd_file_is_a_clear_error(tmp_path):
    import pytest

    cfg = compose(["+exp=tiny_pipeline", f"run_dir={tmp_path}/run",
                   f"stages.kd_seed.from_file={tmp_path}/nope.jsonl"])
    with pytest.raises(FileNotFoundError, match="nope.jsonl is not a file"):
        run_single(cfg, "kd_seed")
