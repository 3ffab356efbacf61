"""The LoRA warmup under DeepSpeed ZeRO-3 on 2 gloo CPU ranks saves the full (gathered) LoRA
weights and Adam moments, equal to a 1-rank run's on the same global batch.

The child entry (`python tests/test_influence_zero3.py --child ARGS.json`, started by
`deepspeed --num_gpus N`) runs `jz3.influence.warmup.run_warmup` with ZeRO-3 on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(args_file: str) -> None:
    import os

    from jz3.config.data import DataConfig, TokenizerConfig
    from jz3.config.deepspeed import DeepSpeedConfig
    from jz3.config.enums import Precision, Schedule, TrainMode
    from jz3.config.influence import InfluenceConfig, LoraConfig
    from jz3.config.model import ModelConfig
    from jz3.config.trainer import TrainerConfig
    from jz3.influence.run import load_candidates
    from jz3.influence.warmup import run_warmup

    a = json.loads(Path(args_file).read_text())
    out = Path(a["out"])
    trainer = TrainerConfig(mode=TrainMode.sft, lr=1e-2, schedule=Schedule.linear,
                            warmup_ratio=0.0, min_lr_ratio=0.0, weight_decay=0.0,
                            betas=[0.9, 0.999], epochs=2, global_batch_size=4,
                            micro_batch_size=2, precision=Precision.fp32, save_every=1000,
                            peak_tflops=0.2)
    data = DataConfig(tokenizer=TokenizerConfig(path=a["tok"]), seq_len=64, num_workers=0,
                      packed_dir=str(out / "packed"))
    ic = InfluenceConfig(lora=LoraConfig(r=4, alpha=8, dropout=0.0), warmup_fraction=1.0)
    rank = int(os.environ.get("RANK", "0"))
    examples, _ = load_candidates(a["cands"], out / f"rejected.rank{rank}.jsonl")
    ck = run_warmup(seed=0, model=ModelConfig(), trainer=trainer,
                    deepspeed=DeepSpeedConfig(enabled=True, zero_stage=3,
                                              stage3_param_persistence_threshold=0),
                    data=data, influence=ic, examples=examples, out_dir=out / "warmup")
    print("RESULT " + json.dumps([c.name for c in ck]))


def launch(tmp: Path, name: str, ranks: int, tok: Path, cands: Path) -> Path:
    from tests.dist_harness import launch_ranks

    out = tmp / name
    out.mkdir()
    args = out / "args.json"
    args.write_text(json.dumps({"out": str(out), "tok": str(tok), "cands": str(cands)}))
    p = launch_ranks(Path(__file__), ["--child", str(args)], ranks)
    assert p.returncode == 0 and "RESULT" in p.stdout, f"{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return out / "warmup"


@pytest.mark.slow
def test_zero3_lora_checkpoints_are_gathered_and_match_one_rank(tmp_path, shared_data,
                                                                 tiny_tokenizer_dir):
    from safetensors.torch import load_file

    rows = [json.loads(x) for x in
            (shared_data / "jiuzhang3_samples" / "cot_pretrain_sampled.jsonl").open()][:8]
    cands = tmp_path / "cands.jsonl"
    cands.write_text("".join(json.dumps({"id": f"k{i}", "prompt": r["input"][:120],
                                         "completion": r["output"][:160]}) + "\n"
                             for i, r in enumerate(rows)))
    one = launch(tmp_path, "one", 1, tiny_tokenizer_dir, cands)
    two = launch(tmp_path, "two", 2, tiny_tokenizer_dir, cands)
    for ck in ("ckpt-00001", "ckpt-00002"):
        a, b = load_file(str(one / ck / "lora.safetensors")), load_file(str(two / ck / "lora.safetensors"))
        assert sorted(a) == sorted(b) and len(a) == 2 * 4 * 2  # A,B x q,k,v,o x 2 layers
        for k in a:
            assert b[k].numel() > 0 and b[k].shape == a[k].shape, k  # full, not a partition
            assert b[k].shape[0] == 4 or b[k].shape[1] == 4, k  # r = 4
            assert (b[k] - a[k]).abs().max() <= 1e-4 + 1e-3 * a[k].abs().max(), k
        assert any(float(a[k].abs().max()) > 0 for k in a if "lora_B" in k)  # trained
        ma, mb = load_file(str(one / ck / "adam.safetensors")), load_file(str(two / ck / "adam.safetensors"))
        assert sorted(ma) == sorted(mb)
        for k in ma:
            assert mb[k].shape == ma[k].shape and mb[k].numel() > 0, k
            assert (mb[k] - ma[k]).abs().max() <= 1e-6 + 1e-3 * ma[k].abs().max(), k
    base1 = load_file(str(one / "base.safetensors"))
    base2 = load_file(str(two / "base.safetensors"))
    assert sorted(base1) == sorted(base2)
    for k in base1:
        assert base2[k].numel() > 0 and base2[k].shape == base1[k].shape, k


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--child", required=True)
    ap.add_argument("--local_rank", "--local-rank", type=int)
    ns = ap.parse_args()
    if ns.local_rank is not None:
        import os

        os.environ.setdefault("LOCAL_RANK", str(ns.local_rank))
    child(ns.child)
