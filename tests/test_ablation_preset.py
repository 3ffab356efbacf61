"""`+exp=smol_ablation`: the SmolLM2 real-data ablation as a preset of the pipeline. Its plan
holds exactly the ablation's stages with the intended inputs (no teacher, synthesizer or filter:
the synthetic arm trains on JiuZhang3.0's released records), and a shrunken run through the
pipeline on the real SmolLM2 gives the verdict with both arms at two seeds and the base row."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jz3.config import compose

STAGES = ["snippets", "pretrain", "pretrain_raw", "ablation"]
RELEASED = ["jiuzhang3_samples/cot_pretrain_sampled.jsonl",
            "jiuzhang3_samples/tool_pretrain_sampled.jsonl"]

SHRINK = ["stages.snippets.snippets.max_snippets=40",
          "stages.pretrain.trainer.max_steps=1", "stages.pretrain.data.seq_len=32",
          "stages.pretrain.trainer.global_batch_size=2",
          "stages.pretrain.trainer.micro_batch_size=1", "stages.pretrain.trainer.save_every=0",
          "stages.ablation.loss_eval.benchmarks=[gsm8k]", "stages.ablation.loss_eval.limit=4",
          "stages.ablation.loss_eval.max_len=64", "stages.ablation.loss_eval.accuracy_limit=1",
          "stages.ablation.eval.max_new_tokens=4"]


def _plan(cfg) -> dict:
    from jz3.pipeline.runner import plan_lines
    from jz3.pipeline.stages import STAGES as ALL

    return {line.split(" ", 2)[1]: json.loads(line.split(" ", 2)[2])
            for line in plan_lines(cfg, ALL)}


def test_preset_plans_exactly_the_ablation_stages(tmp_path, shared_data):
    from jz3.pipeline.stages import recipe_problems

    cfg = compose(["+exp=smol_ablation", f"run_dir={tmp_path}"])
    plan = _plan(cfg)
    assert list(plan) == STAGES
    assert {k: v["inputs"] for k, v in plan.items()} == {
        "snippets": [], "pretrain": [], "pretrain_raw": ["snippets", "pretrain"],
        "ablation": ["pretrain", "pretrain_raw"]}
    st = cfg.stages
    released = [str(shared_data / f) for f in RELEASED]
    assert [s.path for s in st.pretrain.data.sources] == released
    # the extra seed's synthetic arm trains on the same released records, not a filter stage
    assert st.pretrain_raw.synthetic_sources == st.pretrain.data.sources
    assert st.pretrain_raw.data.sources == []
    assert st.pretrain.data.records_as_text and st.pretrain_raw.data.records_as_text
    smol = st.pretrain.model.path
    assert smol.endswith(".cache/models/smollm2-135m-instruct")
    for sec in (st.pretrain, st.pretrain_raw):
        assert sec.model.name == "smollm2-135m-instruct" and sec.model.path == smol
        assert not sec.deepspeed.enabled and sec.trainer.precision.value == "bf16"
        assert sec.data.tokenizer.path == smol
    # 2 seeds per arm at the same token budget: seed 0 (pretrain, pretrain_raw), extra seed 1
    assert st.pretrain.trainer.seed == st.pretrain_raw.trainer.seed == 0
    assert st.pretrain_raw.extra_seeds == [1] and st.pretrain_raw.match_pretrain_steps
    assert st.pretrain.trainer.max_steps * st.pretrain.trainer.global_batch_size \
        * st.pretrain.data.seq_len == 20480
    assert recipe_problems(cfg) == []  # the arms differ only in data and seed
    # without pretrain sources of its own (the demo), the extra seed's synthetic arm reads filter
    from jz3.pipeline.runner import used_inputs
    from jz3.pipeline.stages import BY_NAME

    demo = compose(["+exp=demo"]).stages.pretrain_raw
    assert demo.synthetic_sources == [] and demo.extra_seeds == [2]
    assert used_inputs(BY_NAME["pretrain_raw"], demo) == ["snippets", "pretrain", "filter"]
    # the raw arm follows every recipe setting of pretrain, also when pretrain's is overridden
    small = compose(["+exp=smol_ablation", f"run_dir={tmp_path}", *SHRINK]).stages
    assert (small.pretrain_raw.data.seq_len, small.pretrain_raw.trainer.global_batch_size) == (32, 2)
    ab = st.ablation
    assert ab.enabled and ab.base_model == smol
    assert ab.loss_eval.limit is None and ab.loss_eval.precision.value == "bf16"
    assert list(ab.loss_eval.benchmarks) == ["gsm8k", "math-oai"] and ab.loss_eval.accuracy_limit == 8




@pytest.mark.slow
def test_shrunken_preset_runs_through_the_pipeline(tmp_path, project_root, shared_data):
    from jz3.models.gguf_import import SMOLLM2_DIR, is_imported

    if not is_imported(SMOLLM2_DIR):
        pytest.fail(f"{SMOLLM2_DIR} is not imported: run `make models`")
    run = tmp_path / "run"
    cp = subprocess.run([sys.executable, "launch/pipeline.py", "+exp=smol_ablation",
                         f"run_dir={run}", *SHRINK], cwd=project_root, capture_output=True,
                        text=True, timeout=900)
    assert cp.returncode == 0, cp.stderr[-3000:]
    summary = json.loads(cp.stdout.strip().splitlines()[-1])
    assert summary["stages"] == {s: "ran" for s in STAGES}
    ab = json.loads((run / "ablation" / "out" / "ablation.json").read_text())
    rows = ab["models"]
    assert sorted(rows) == ["base", "pretrain", "pretrain_raw", "raw_seed1", "synthetic_seed1"]
    arms = {n: (r["arm"], r["seed"]) for n, r in rows.items()}
    assert arms == {"base": ("base", None), "pretrain": ("synthetic", 0),
                    "pretrain_raw": ("raw", 0), "synthetic_seed1": ("synthetic", 1),
                    "raw_seed1": ("raw", 1)}
    trained = [r for n, r in rows.items() if n != "base"]
    assert {(r["steps"], r["tokens"]) for r in trained} == {(1, 64)}  # matched tokens
    losses = {n: r["loss"]["gsm8k"]["loss_per_token"] for n, r in rows.items()}
    assert all(r["loss"]["gsm8k"]["items"] == 4 for r in rows.values())
    assert len(set(losses.values())) == 5  # every model is a different model
    assert all(r["accuracy"]["gsm8k"]["cot"]["n"] == 1 for r in rows.values())
    c = ab["comparison"]["gsm8k"]
    assert len(c["synthetic"]) == len(c["raw"]) == 2  # both arms at 2 seeds, base not an arm
    assert c["paired"]["seed_pairs"] == 2 and c["paired"]["items"] == 4
    assert c["paired"]["low"] <= c["paired"]["gap"] <= c["paired"]["high"]
    assert c["verdict"] in ("synthetic_better", "raw_better", "inconclusive")
    assert c["spread_verdict"] in ("synthetic_better", "raw_better", "within_spread")
    # the synthetic arm trained on the released records as text, the raw arm on snippets
    pre = json.loads((run / "pretrain" / "manifest.json").read_text())
    assert [s["name"] for s in pre["config"]["data"]["sources"]] == ["jz3_cot", "jz3_tool"]
    seed1 = json.loads((run / "pretrain_raw" / "out" / "packed_synthetic" / "pack.json")
                       .read_text())
    assert seed1["sources"] == ["jz3_cot", "jz3_tool"]
    assert "# Ablation" in (run / "report.md").read_text() or "Ablation" in \
        (run / "report.md").read_text()
