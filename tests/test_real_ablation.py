"""The SmolLM2 real-data ablation (jz3/ablation/smol.py) end to end at a minimal size: base +
one synthetic and one raw run of the same token budget, losses, accuracy, report, resume."""

from __future__ import annotations

import json

import pytest

from jz3.ablation.smol import SmolAblationConfig, docs_section, run_ablation
from jz3.models.gguf_import import SMOLLM2_DIR, is_imported

pytestmark = pytest.mark.slow


def test_tiny_ablation_runs_reports_and_resumes(tmp_path, shared_data):
    if not is_imported(SMOLLM2_DIR):
        pytest.fail(f"{SMOLLM2_DIR} is not imported: run `make models`")
    cfg = SmolAblationConfig(out_dir=str(tmp_path / "abl"), seeds=[0], steps=1, seq_len=32,
                             global_batch_size=2, micro_batch_size=1, benchmarks=["gsm8k"],
                             loss_items=3, loss_max_len=64, accuracy_items=1,
                             accuracy_max_new_tokens=4)
    res = run_ablation(cfg)
    out = tmp_path / "abl"
    assert [m["model"] for m in res["models"]] == ["base", "synthetic-s0", "raw-s0"]
    # same trainer, same budget: both arms saw exactly steps x batch x seq_len tokens
    for arm in ("synthetic-s0", "raw-s0"):
        tr = json.loads((out / "runs" / arm / "train" / "train_result.json").read_text())
        assert tr["steps"] == 1 and tr["tokens_seen"] == res["tokens_per_run"] == 64
    # the arms trained on what they say: released records vs corpus snippets
    syn = [json.loads(x)["text"] for x in (out / "data" / "synthetic.jsonl").open()]
    raw = [json.loads(x)["text"] for x in (out / "data" / "raw.jsonl").open()]
    assert len(syn) == 2000 and all(t.startswith("## Question") for t in syn)
    assert len(raw) > 1000 and max(len(t) for t in raw) < 3000
    losses = [m["loss"]["gsm8k"] for m in res["models"]]
    assert all(x["items"] == 3 and 0 < x["loss_per_token"] < 5 for x in losses)
    assert len({x["loss_per_token"] for x in losses}) == 3  # training changed the models
    assert all(m["accuracy"]["gsm8k"]["n"] == 1 for m in res["models"])
    assert len(res["verdict"]) == 1 and res["verdict"][0].startswith("gsm8k: synthetic")
    assert (out / "ablation.png").stat().st_size > 1000
    section = docs_section(res, out, "img/x.png")
    assert "Status: complete" in section and "| raw-s0 |" in section
    # a second invocation reuses every phase
    again = run_ablation(cfg)
    assert [m["loss"] for m in again["models"]] == [m["loss"] for m in res["models"]]
    bad = SmolAblationConfig(**{**cfg.__dict__, "steps": 2})
    with pytest.raises(ValueError, match="trained for 1 steps"):
        run_ablation(bad)
