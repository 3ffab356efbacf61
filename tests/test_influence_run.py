"""End to end on a tiny Llama: warmup through the trainer, SLURM-array sharded extraction,
merge with a missing shard, resume, scoring, selection, and the launch script."""

import json
import os
import subprocess
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jz3.config import compose  # noqa: E402
from jz3.config.enums import InfluenceStep  # noqa: E402
from jz3.influence.run import run_influence  # noqa: E402
from jz3.influence.store import MissingShardsError, merge_shards, shard_dir  # noqa: E402

OVERRIDES = ["influence.candidate_max=12", "influence.warmup_fraction=0.5",
             "influence.warmup_epochs=2", "influence.target_max=6", "influence.proj_dim=64",
             "influence.max_len=64", "influence.batch_size=4", "influence.top_k=3",
             "data.seq_len=64", "trainer.global_batch_size=4", "trainer.micro_batch_size=2"]


@pytest.mark.slow
def test_tiny_influence_sharded_end_to_end(tmp_path, shared_data, monkeypatch, project_root):
    run_dir = tmp_path / "run"
    cfg = compose(["+exp=tiny_influence", f"run_dir={run_dir}", *OVERRIDES])
    cands = tmp_path / "cands.jsonl"
    rows = [json.loads(x) for x in
            (shared_data / "jiuzhang3_samples" / "cot_pretrain_sampled.jsonl").open()][:12]
    with cands.open("w") as fh:  # one unusable record, then short kd-shaped candidates
        fh.write(json.dumps({"id": "bad", "note": "no text"}) + "\n")
        for i, r in enumerate(rows):
            fh.write(json.dumps({"id": f"kd-{i}", "snippet_id": f"s{i}",
                                 "prompt": r["input"][:150],
                                 "completion": r["output"][:200]}) + "\n")
    out = run_dir / "influence"

    st = run_influence(cfg, cands, out, step=InfluenceStep.warmup)
    assert st["warmup"] == ["ckpt-00001", "ckpt-00002"]
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["record"]["id"] for r in rejected] == ["bad"]
    meta = json.loads((out / "warmup" / "ckpt-00001" / "meta.json").read_text())
    assert meta["lr_mean"] > 0 and meta["beta1"] == 0.9

    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    st = run_influence(cfg, cands, out, step=InfluenceStep.extract)
    assert st["extract"] == {"shard": 0, "num_shards": 2, "rows": 6, "computed": 12}
    with pytest.raises(MissingShardsError, match=r"\[1\]"):
        run_influence(cfg, cands, out, step=InfluenceStep.score)

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    run_influence(cfg, cands, out, step=InfluenceStep.extract)
    # resume: forget part of shard 0 (as if the task died mid-way), rerun, same features
    s0 = shard_dir(out / "features" / "candidates", 0, 2)
    before = np.load(s0 / "ckpt-00002.npy").copy()
    (s0 / "done.json").unlink()
    (s0 / "progress.json").write_text(json.dumps({"ckpt-00001": 6, "ckpt-00002": 2}))
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    st = run_influence(cfg, cands, out, step=InfluenceStep.extract)
    assert st["extract"]["computed"] == 4
    np.testing.assert_array_equal(np.load(s0 / "ckpt-00002.npy"), before)

    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT")
    cfg2 = compose(["+exp=tiny_influence", f"run_dir={run_dir}", *OVERRIDES,
                    "influence.num_shards=2"])
    st = run_influence(cfg2, cands, out, step=InfluenceStep.score)
    assert st["score"]["candidates"] == 12 and st["score"]["selected"] == 3
    scores = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    assert [s["id"] for s in scores] == [f"kd-{i}" for i in range(12)]
    assert all(np.isfinite(s["score"]) and -1 <= s["score"] / sum(
        st["score"]["checkpoints"].values()) <= 1 for s in scores)
    selected = [json.loads(x) for x in (out / "selected.jsonl").read_text().splitlines()]
    best = sorted(scores, key=lambda s: -s["score"])[:3]
    assert [s["id"] for s in selected] == [s["id"] for s in best]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["selected"] == 3 and manifest["counts"]["rejected"] == 1
    feats = merge_shards(out / "features" / "candidates", 2)
    m = feats.matrix("ckpt-00001")
    assert m.dtype == np.float16 and m.shape == (12, 64)
    np.testing.assert_allclose(np.linalg.norm(m.astype(np.float32), axis=1), 1.0, atol=2e-3)

    # the launch script re-scores from the stored features (warmup and features are reused)
    res = subprocess.run(
        [sys.executable, str(project_root / "launch" / "influence.py"), "+exp=tiny_influence",
         f"run_dir={run_dir}", *OVERRIDES, "influence.step=score", "influence.num_shards=2",
         f"influence.candidates={cands}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["score"]["selected"] == 3
    again = [json.loads(x) for x in (out / "selected.jsonl").read_text().splitlines()]
    assert again == selected
