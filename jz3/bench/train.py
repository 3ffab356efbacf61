"""Training throughput: jz3's trainer vs the HF `Trainer`, same tiny model, data, global batch
and ZeRO-3 config, both on 2 CPU ranks under `deepspeed` (gloo).

    python -m jz3.bench.train [--steps 20] [--hidden 128] [--layers 4] [--seq-len 256]

One `deepspeed --num_gpus 2` launch alternates the two trainers `--rounds` times in the same
ranks (so both see the same machine load; the best round of each counts); throughput is measured
between the ends of optimizer steps `warmup` and `steps` (wall clock, rank 0), on the same packed
data (documents masked through restarting position ids in both). Prints a JSON object last:
{ours_tokens_per_s, hf_tokens_per_s, ratio, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[2]


def overrides(a: argparse.Namespace, run_dir: Path) -> List[str]:
    return ["+exp=tiny_pretrain", "deepspeed@stages.pretrain.deepspeed=zero3", f"run_dir={run_dir}",
            f"stages.pretrain.data.packed_dir={a.work}/packed", f"stages.pretrain.data.tokenizer.save_dir={a.work}/tokenizer",
            f"stages.pretrain.data.tokenizer.path={a.work}/tokenizer" if (Path(a.work) / "tokenizer" / "tokenizer.model").exists()
            else "stages.pretrain.data.tokenizer.path=null",
            f"stages.pretrain.data.seq_len={a.seq_len}", "stages.pretrain.data.num_workers=0", f"stages.pretrain.model.hidden_size={a.hidden}",
            f"stages.pretrain.model.intermediate_size={a.hidden * 11 // 4}", f"stages.pretrain.model.num_hidden_layers={a.layers}",
            f"stages.pretrain.trainer.max_steps={a.steps}", f"stages.pretrain.trainer.global_batch_size={a.global_batch}",
            f"stages.pretrain.trainer.micro_batch_size={a.micro_batch}", "stages.pretrain.trainer.save_every=0", "stages.pretrain.trainer.export_hf=false",
            "stages.pretrain.trainer.schedule=cosine", "stages.pretrain.trainer.warmup_ratio=0.1", "stages.pretrain.trainer.lr=1e-3"]


# ------------------------------------------------------------------ worker side (one rank)
def worker_ours(a: argparse.Namespace) -> float:
    from jz3.config import compose
    from jz3.train.callbacks import Callback
    from jz3.train.entry import run_training

    times: List[float] = []

    class StepClock(Callback):
        def on_step_end(self, state: Any, metrics: Dict[str, float]) -> None:
            times.append(time.perf_counter())

    cfg = compose(overrides(a, Path(a.work) / f"ours{a.round}")).stages.pretrain
    run_training(cfg, callbacks=[StepClock()])
    return _rate(a, times)


def worker_hf(a: argparse.Namespace) -> float:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from jz3.config import compose
    from jz3.data.packed_dataset import MixedPackedDataset
    from jz3.models import build_model, hidden_size_of
    from jz3.parallel.dist import init_distributed
    from jz3.parallel.ds_config import build_ds_config

    cfg = compose(overrides(a, Path(a.work) / f"hf{a.round}")).stages.pretrain
    info = init_distributed(use_deepspeed=True)
    ds_config = build_ds_config(cfg.deepspeed, cfg.trainer, info.world_size, hidden_size_of(cfg.model))
    ds = MixedPackedDataset(cfg.data.packed_dir, cfg.data.seq_len)
    times: List[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            times.append(time.perf_counter())

    def collate(rows: List[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        return {k: torch.as_tensor(__import__("numpy").stack([r[k] for r in rows]))
                for k in ("input_ids", "labels", "position_ids")}

    targs = TrainingArguments(
        output_dir=str(Path(a.work) / f"hf{a.round}" / "out"), per_device_train_batch_size=cfg.trainer.micro_batch_size,
        gradient_accumulation_steps=ds_config["gradient_accumulation_steps"], max_steps=a.steps,
        learning_rate=cfg.trainer.lr, weight_decay=cfg.trainer.weight_decay, adam_beta1=cfg.trainer.betas[0],
        adam_beta2=cfg.trainer.betas[1], adam_epsilon=cfg.trainer.eps, max_grad_norm=cfg.trainer.grad_clip,
        lr_scheduler_type="cosine", warmup_steps=max(1, a.steps // 10), deepspeed=ds_config,
        bf16=False, fp16=False, report_to="none", save_strategy="no", logging_steps=10_000,
        dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False, seed=cfg.trainer.seed,
        # accelerate counts CPU ranks only in its MULTI_CPU mode; DeepSpeed still drives the model.
        use_cpu=True, ddp_backend="gloo")
    model = build_model(cfg.model, torch.float32, ds_config)
    trainer = Trainer(model=model, args=targs, train_dataset=ds, data_collator=collate, callbacks=[StepClock()])
    trainer.train()
    if not trainer.is_deepspeed_enabled or type(trainer.model_wrapped).__name__ != "DeepSpeedEngine":
        raise RuntimeError(f"HF Trainer did not run under DeepSpeed ({type(trainer.model_wrapped).__name__})")
    stage = trainer.model_wrapped.zero_optimization_stage()
    if stage != 3 or targs.world_size != int(os.environ["WORLD_SIZE"]):
        raise RuntimeError(f"HF Trainer ran ZeRO-{stage} on {targs.world_size} ranks, expected ZeRO-3")
    return _rate(a, times)


def _rate(a: argparse.Namespace, times: List[float]) -> float:
    n = len(times) - 1 - a.warmup
    return n * a.global_batch * a.seq_len / (times[-1] - times[a.warmup])


def worker_both(a: argparse.Namespace) -> None:
    """Alternate ours / HF `rounds` times in the same ranks (same load on the machine for both);
    rank 0 writes every round's tokens/s."""
    rates: Dict[str, List[float]] = {"ours": [], "hf": []}
    for r in range(a.rounds):
        a.round = r
        rates["ours"].append(worker_ours(a))
        rates["hf"].append(worker_hf(a))
    if int(os.environ.get("RANK", "0")) == 0:
        Path(a.result).write_text(json.dumps(rates))


# ------------------------------------------------------------------ driver
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(a: argparse.Namespace) -> Dict[str, Any]:
    result = Path(a.work) / "rates.json"
    ds = shutil.which("deepspeed", path=str(Path(sys.executable).parent)) or "deepspeed"
    cmd = [ds, "--num_gpus", str(a.ranks), "--master_port", str(_port()), str(Path(__file__).resolve()),
           "--worker", "both", "--result", str(result), "--work", str(a.work)]
    for k in ("rounds", "steps", "warmup", "hidden", "layers", "seq_len", "global_batch", "micro_batch"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(a, k))]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), WANDB_MODE="disabled", PYTHONPATH=str(ROOT),
               TOKENIZERS_PARALLELISM="false")
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not result.exists():
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"benchmark run failed (rc={proc.returncode})")
    out = json.loads(result.read_text())
    out["launch_wall_s"] = time.time() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["both"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--result")
    ap.add_argument("--work")
    ap.add_argument("--local_rank", "--local-rank", type=int)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--global-batch", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.worker:
        worker_both(a)
        return
    own_work = a.work is None
    a.work = a.work or tempfile.mkdtemp(prefix="jz3_bench_train_")
    try:
        rates = launch(a)
    finally:
        if own_work:
            shutil.rmtree(a.work, ignore_errors=True)
    ours, hf = max(rates["ours"]), max(rates["hf"])
    print(json.dumps({"ours_tokens_per_s": round(ours, 1), "hf_tokens_per_s": round(hf, 1),
                      "ratio": round(ours / hf, 3), "ours_rounds": [round(x, 1) for x in rates["ours"]],
                      "hf_rounds": [round(x, 1) for x in rates["hf"]], "ranks": a.ranks, "zero_stage": 3,
                      "steps_timed": a.steps - 1 - a.warmup, "global_batch": a.global_batch,
                      "seq_len": a.seq_len, "hidden": a.hidden, "layers": a.layers,
                      "launch_wall_s": round(rates["launch_wall_s"], 1)}))


if __name__ == "__main__":
    main()
