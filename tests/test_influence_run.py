"""End to end on a tiny Llama: warmup through the trainer (the stage's own trainer section),
SLURM-array sharded extraction, merge with a missing shard, resume, scoring over the GSM8K and
MATH subtasks, selection."""

import json
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jz3.config.data import DataConfig, TokenizerConfig  # noqa: E402
from jz3.config.deepspeed import DeepSpeedConfig  # noqa: E402
from jz3.config.enums import InfluenceStep, Precision, Schedule, TrainMode  # noqa: E402
from jz3.config.influence import InfluenceConfig, LoraConfig  # noqa: E402
from jz3.config.model import ModelConfig  # noqa: E402
from jz3.config.trainer import TrainerConfig  # noqa: E402
from jz3.influence.run import run_influence  # noqa: E402
from jz3.influence.store import MissingShardsError, merge_shards, shard_dir  # noqa: E402


def sections(tok_dir, shared, **influence):
    """The influence stage's sections at toy size: LESS's schedule shape (linear, 3% warmup,
    wd 0, AdamW (0.9, 0.999)), a larger lr and 2 epochs so that a few CPU steps move LoRA."""
    trainer = TrainerConfig(mode=TrainMode.sft, lr=1e-3, schedule=Schedule.linear,
                            warmup_ratio=0.03, min_lr_ratio=0.0, weight_decay=0.0,
                            betas=[0.9, 0.999], epochs=2, global_batch_size=4,
                            micro_batch_size=2, precision=Precision.fp32, save_every=1000,
                            peak_tflops=0.2, log_every=5)
    data = DataConfig(tokenizer=TokenizerConfig(path=str(tok_dir)), seq_len=64, num_workers=0)
    ic = InfluenceConfig(lora=LoraConfig(r=8, alpha=16, dropout=0.05), warmup_fraction=0.5,
                         proj_dim=64, max_len=64, batch_size=4, top_k=3, top_p=None,
                         targets=[str(shared / "gsm8k" / "train.jsonl"),
                                  str(shared / "math_train" / "train.jsonl")],
                         target_max=3, **influence)
    return dict(seed=0, model=ModelConfig(), trainer=trainer,
                deepspeed=DeepSpeedConfig(enabled=False), data=data, influence=ic)


@pytest.mark.slow
def test_tiny_influence_sharded_end_to_end(tmp_path, shared_data, monkeypatch, tiny_tokenizer_dir):
    cands = tmp_path / "cands.jsonl"
    rows = [json.loads(x) for x in
            (shared_data / "jiuzhang3_samples" / "cot_pretrain_sampled.jsonl").open()][:12]
    with cands.open("w") as fh:  # one unusable record, a blank line, then kd-shaped candidates
        fh.write(json.dumps({"id": "bad", "note": "no text"}) + "\n\n")
        for i, r in enumerate(rows):
            fh.write(json.dumps({"id": f"kd-{i}", "snippet_id": f"s{i}",
                                 "prompt": r["input"][:150],
                                 "completion": r["output"][:200]}) + "\n")
    out = tmp_path / "influence"
    sec = sections(tiny_tokenizer_dir, shared_data)

    res = run_influence(**sec, candidates=cands, out_dir=out, step=InfluenceStep.warmup)
    assert res.checkpoints == ["ckpt-00001", "ckpt-00002"]
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["record"]["id"], r["line"]) for r in rejected] == [("bad", 1)]
    assert res.candidates.read == 13 and res.candidates.used == 12
    assert res.candidates.rejected == 1
    # the warmup ran with the stage's own trainer section (not some run-wide trainer)
    assert res.warmup["lr"] == 1e-3 and res.warmup["betas"] == [0.9, 0.999]
    assert res.warmup["epochs"] == 2 and res.warmup["examples"] == 6
    assert res.warmup["seq_len"] == 64 and res.warmup["weight_decay"] == 0.0
    meta = json.loads((out / "warmup" / "ckpt-00001" / "meta.json").read_text())
    assert meta["lr_mean"] > 0 and meta["beta1"] == 0.9 and meta["beta2"] == 0.999

    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    res = run_influence(**sec, candidates=cands, out_dir=out, step=InfluenceStep.extract)
    assert res.extract == {"shard": 0, "num_shards": 2, "rows": 6, "computed": 12}
    with pytest.raises(MissingShardsError, match=r"\[1\]"):
        run_influence(**sec, candidates=cands, out_dir=out, step=InfluenceStep.score)

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    run_influence(**sec, candidates=cands, out_dir=out, step=InfluenceStep.extract)
    # resume: forget part of shard 0 (as if the task died mid-way), rerun, same features
    s0 = shard_dir(out / "features" / "candidates", 0, 2)
    before = np.load(s0 / "ckpt-00002.npy").copy()
    (s0 / "done.json").unlink()
    (s0 / "progress.json").write_text(json.dumps({"ckpt-00001": 6, "ckpt-00002": 2}))
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    res = run_influence(**sec, candidates=cands, out_dir=out, step=InfluenceStep.extract)
    assert res.extract["computed"] == 4
    np.testing.assert_array_equal(np.load(s0 / "ckpt-00002.npy"), before)

    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT")
    sec2 = sections(tiny_tokenizer_dir, shared_data, num_shards=2)
    res = run_influence(**sec2, candidates=cands, out_dir=out, step=InfluenceStep.score)
    assert res.selected == 3 and res.targets == {"gsm8k": 3, "math_train": 3}
    assert res.counts()["candidates"] == 12 and res.counts()["rejected"] == 1
    assert sum(res.checkpoint_weights.values()) == pytest.approx(1.0)
    scores = [json.loads(x) for x in res.scores_path.read_text().splitlines()]
    assert [s["id"] for s in scores] == [f"kd-{i}" for i in range(12)]
    assert all(np.isfinite(s["score"]) and -1 <= s["score"] <= 1 for s in scores)
    selected = [json.loads(x) for x in res.selected_path.read_text().splitlines()]
    best = sorted(scores, key=lambda s: -s["score"])[:3]
    assert [s["id"] for s in selected] == [s["id"] for s in best]
    targ = merge_shards(out / "features" / "targets", 1)
    assert targ.subtasks == ["gsm8k"] * 3 + ["math_train"] * 3
    feats = merge_shards(out / "features" / "candidates", 2)
    m = feats.matrix("ckpt-00001")
    assert m.dtype == np.float16 and m.shape == (12, 64)
    np.testing.assert_allclose(np.linalg.norm(m.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert not (out / "manifest.json").exists()  # provenance is the pipeline runner's job



@pytest.mark.slow
def test_warmup_with_fewer_steps_than_epochs_still_writes_every_checkpoint(
        tmp_path, shared_data, tiny_tokenizer_dir):
    """One optimizer step for 3 epochs (the old epoch-boundary dict lost checkpoints here)."""
    cands = tmp_path / "cands.jsonl"
    cands.write_text("".join(json.dumps({"id": f"k{i}", "prompt": "Solve:",
                                         "completion": f"{i} + {i} = {2 * i}"}) + "\n"
                             for i in range(8)))
    sec = sections(tiny_tokenizer_dir, shared_data)
    sec["trainer"].epochs, sec["trainer"].global_batch_size = 3, 64
    res = run_influence(**sec, candidates=cands, out_dir=tmp_path / "inf", step=InfluenceStep.warmup)
    assert res.checkpoints == ["ckpt-00001", "ckpt-00002", "ckpt-00003"]
    metas = [json.loads((tmp_path / "inf" / "warmup" / c / "meta.json").read_text())
             for c in res.checkpoints]
    assert [m["step"] for m in metas] == [1, 1, 1] and [m["epoch"] for m in metas] == [1, 2, 3]
