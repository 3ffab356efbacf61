"""LoRA warmup through the project trainer, dumping LoRA weights + Adam moments per epoch.

The warmup runs with the influence stage's own sections (`seed`, `model`, `trainer`,
`deepspeed`, `data`): LESS trains it with lr 2e-5, linear schedule, 3% warmup, weight decay 0,
AdamW (0.9, 0.999), 4 epochs, 32 sequences per optimizer step, 2048 tokens, on a seeded random
5% of the candidates (`influence.warmup_fraction`, drawn with `influence.warmup_sample_seed`,
LESS `sample_data_seed` 42; training with `trainer.seed`, LESS `--seed 0`). jz3 takes those values from the stage's
config as given (the plan view shows them); it only points the trainer at its own data and
output folder, turns off the HF export and logs every step (the checkpoint weights are mean
learning rates per epoch) (`warmup_job`). One checkpoint per `trainer.epochs` (an integer).

Checkpoint format (read directly by the feature step; no HF optimizer files involved):
    <warmup>/ckpt-00001/lora.safetensors   `{<LoRA module name>: weight}`
    <warmup>/ckpt-00001/adam.safetensors   `{exp_avg.<name>: m, exp_avg_sq.<name>: v}`
    <warmup>/ckpt-00001/meta.json          {step, epoch, lr_mean, beta1, beta2, eps} (last)
    <warmup>/base.safetensors              base weights when the model was built from config
Module names are those of the peft-wrapped model (`...q_proj.lora_A.default`).
"""

from __future__ import annotations

import copy
import json
import logging
import random
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from safetensors.torch import load_file, save_file

from jz3.config.data import DataConfig, DataSource
from jz3.config.deepspeed import DeepSpeedConfig
from jz3.config.enums import TrainMode
from jz3.config.influence import InfluenceConfig
from jz3.config.model import ModelConfig
from jz3.config.trainer import TrainerConfig
from jz3.data.records import atomic_write_text, write_jsonl
from jz3.influence.examples import Example
from jz3.influence.lora import apply_lora, lora_linears
from jz3.influence.precondition import AdamMoments
from jz3.train.callbacks import Callback, TrainState

log = logging.getLogger(__name__)
CKPT_PREFIX = "ckpt-"


def ckpt_name(epoch: int) -> str:
    return f"{CKPT_PREFIX}{epoch:05d}"


@dataclass
class WarmupCheckpoint:
    name: str
    path: Path
    step: int
    lr_mean: float
    lora: Dict[str, torch.Tensor]
    adam: AdamMoments


@dataclass
class WarmupJob:
    """What `jz3.train.entry.run_training` reads (the fields of a stage's training section)."""

    seed: int
    model: ModelConfig
    data: DataConfig
    trainer: TrainerConfig
    deepspeed: DeepSpeedConfig


def _zero3_params(params: Sequence[torch.nn.Parameter]) -> List[torch.nn.Parameter]:
    return [p for p in params if hasattr(p, "ds_id")]


def gathered(params: Sequence[torch.nn.Parameter]) -> Any:
    """Context in which ZeRO-3 partitioned parameters hold their full values (a collective: every
    rank must enter it); a no-op for ordinary parameters."""
    part = _zero3_params(params)
    if not part:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(part, modifier_rank=None)


def full_lora_state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """Every LoRA weight, full shape, float32 on CPU, on every rank (gathered under ZeRO-3,
    where `m.weight` alone is this rank's partition: an empty tensor)."""
    mods = lora_linears(model)
    with gathered([m.weight for m in mods.values()]):
        return {n: m.weight.detach().float().cpu().clone().contiguous() for n, m in mods.items()}


def full_base_state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The non-LoRA weights (gathered under ZeRO-3), for a model built from config."""
    names = [n for n, _ in model.named_parameters() if "lora_" not in n]
    with gathered([p for n, p in model.named_parameters() if "lora_" not in n]):
        sd = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()
              if "lora_" not in k}
    if names and all(v.numel() == 0 for k, v in sd.items() if k in names):
        raise RuntimeError("base weights are still partitioned after gathering")
    return sd


def _moment(state: TrainState, p: torch.nn.Parameter, key: str) -> torch.Tensor:
    engine = state.engine
    if getattr(engine, "kind", None) is not None and engine.kind.value == "deepspeed":
        from deepspeed.utils import safe_get_full_optimizer_state

        t = safe_get_full_optimizer_state(p, key)
        if t is None:
            raise RuntimeError(f"DeepSpeed has no {key} for a LoRA parameter (not optimised?)")
    else:
        t = state.optimizer.state[p][key]
    return t.detach().float().cpu().contiguous()


def _lr_by_step(metrics_file: Path) -> Dict[int, float]:
    """`lr` per step from the trainer's metrics.jsonl (the last line per step wins)."""
    lrs: Dict[int, float] = {}
    if metrics_file.exists():
        for line in metrics_file.read_text().splitlines():
            rec = json.loads(line)
            if "lr" in rec and "step" in rec:
                lrs[int(rec["step"])] = float(rec["lr"])
    return lrs


def _mean_lr(metrics_file: Path, first: int, last: int) -> float:
    """Mean `lr` of steps first..last."""
    lrs = {s: v for s, v in _lr_by_step(metrics_file).items() if first <= s <= last}
    if not lrs:
        raise RuntimeError(f"{metrics_file}: no lr logged for steps {first}..{last} "
                           "(the warmup needs trainer.log_every=1)")
    return sum(lrs.values()) / len(lrs)


def epoch_bounds(total_steps: int, epochs: int) -> Dict[int, List[int]]:
    """Optimizer step that ends each epoch -> the epochs ending there. With fewer steps than
    epochs, several epochs end at one step and share its weights (each still gets a
    checkpoint, so the feature and score steps see every epoch)."""
    if epochs < 1 or total_steps < 1:
        raise ValueError(f"warmup: {total_steps} steps for {epochs} epochs")
    out: Dict[int, List[int]] = {}
    for e in range(1, epochs + 1):
        step = min(total_steps, max(1, round(total_steps * e / epochs)))
        out.setdefault(step, []).append(e)
    return out


class LoraDumpCallback(Callback):
    """At the end of every warmup epoch, write the LoRA weights and Adam moments (all ranks
    take part in the gathers; rank 0 writes)."""

    def __init__(self, out_dir: Path, epochs: int, save_base: bool):
        self.out_dir, self.epochs, self.save_base = Path(out_dir), epochs, save_base
        self.bounds: Dict[int, List[int]] = {}

    def on_train_start(self, state: TrainState) -> None:
        self.bounds = epoch_bounds(state.total_steps, self.epochs)
        shared = {s: e for s, e in self.bounds.items() if len(e) > 1}
        if shared:
            log.warning("warmup: %d steps for %d epochs; epochs %s end at the same step",
                        state.total_steps, self.epochs, shared)
        base = self.out_dir / "base.safetensors"
        if self.save_base and not base.exists():
            sd = full_base_state(state.model)
            if state.dist.is_main:
                save_file(sd, str(base))

    def on_step_end(self, state: TrainState, metrics: Dict[str, float]) -> None:
        epochs = self.bounds.get(state.step)
        if not epochs or all((self.out_dir / ckpt_name(e) / "meta.json").exists() for e in epochs):
            return
        mods = lora_linears(state.model)
        lora = full_lora_state(state.model)
        adam: Dict[str, torch.Tensor] = {}
        for n, m in mods.items():
            adam[f"exp_avg.{n}"] = _moment(state, m.weight, "exp_avg")
            adam[f"exp_avg_sq.{n}"] = _moment(state, m.weight, "exp_avg_sq")
        if not state.dist.is_main:
            return
        prev = max([s for s in self.bounds if s < state.step], default=0)
        group = state.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        lr_mean = _mean_lr(state.output_dir / "metrics.jsonl", prev + 1, state.step)
        for epoch in epochs:
            d = self.out_dir / ckpt_name(epoch)
            if (d / "meta.json").exists():
                continue
            meta = {"epoch": epoch, "step": state.step, "lr_mean": lr_mean,
                    "beta1": float(beta1), "beta2": float(beta2), "eps": float(group["eps"])}
            d.mkdir(parents=True, exist_ok=True)
            save_file(lora, str(d / "lora.safetensors"))
            save_file(adam, str(d / "adam.safetensors"))
            atomic_write_text(d / "meta.json", json.dumps(meta, indent=1))
            log.info("warmup checkpoint %s: step %d, mean lr %.3e", d, state.step, lr_mean)


def warmup_subset(examples: Sequence[Example], fraction: float, seed: int) -> List[Example]:
    """A seeded random `fraction` of the candidates (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"influence.warmup_fraction={fraction} must be in (0, 1]")
    k = max(1, round(fraction * len(examples)))
    idx = sorted(random.Random(seed).sample(range(len(examples)), k))
    return [examples[i] for i in idx]


def warmup_epochs(trainer: TrainerConfig) -> int:
    """The number of warmup checkpoints: `trainer.epochs`, which must be a whole number."""
    e = float(trainer.epochs)
    if e < 1 or e != int(e):
        raise ValueError(f"influence stage trainer.epochs={trainer.epochs}: the LoRA warmup saves "
                         "one checkpoint per epoch, so it must be a whole number >= 1 (LESS: 4)")
    return int(e)


def warmup_job(seed: int, model: ModelConfig, trainer: TrainerConfig, deepspeed: DeepSpeedConfig,
               data: DataConfig, data_file: Path, out_dir: Path) -> WarmupJob:
    """The warmup's training job: the stage's sections as given, pointed at the warmup data
    (SFT: loss on the completion) and folders; no HF export, no init_from (LoRA on `model`)."""
    t = copy.deepcopy(trainer)
    t.mode, t.output_dir, t.export_hf, t.init_from = TrainMode.sft, str(out_dir / "train"), False, None
    t.log_every = 1  # the checkpoint weights are mean learning rates per epoch
    d = copy.deepcopy(data)
    d.sources = [DataSource(name="warmup", path=str(data_file), weight=1.0)]
    d.packed_dir = str(out_dir / "packed")
    return WarmupJob(seed=seed, model=copy.deepcopy(model), data=d, trainer=t,
                     deepspeed=copy.deepcopy(deepspeed))


def warmup_summary(job: WarmupJob, ic: InfluenceConfig, n_examples: int, n_candidates: int) -> Dict:
    t = job.trainer
    return {"examples": n_examples, "candidates": n_candidates, "fraction": ic.warmup_fraction,
            "sample_seed": ic.warmup_sample_seed, "seed": t.seed, "data_seed": t.data_seed,
            "epochs": warmup_epochs(t), "lr": t.lr, "schedule": t.schedule.value,
            "warmup_ratio": t.warmup_ratio, "weight_decay": t.weight_decay,
            "betas": list(t.betas), "global_batch_size": t.global_batch_size,
            "seq_len": job.data.seq_len, "max_steps": t.max_steps,
            "lora": {"r": ic.lora.r, "alpha": ic.lora.alpha, "dropout": ic.lora.dropout,
                     "target_modules": list(ic.lora.target_modules)},
            "zero_stage": job.deepspeed.zero_stage if job.deepspeed.enabled else None}


def run_warmup(*, seed: int, model: ModelConfig, trainer: TrainerConfig,
               deepspeed: DeepSpeedConfig, data: DataConfig, influence: InfluenceConfig,
               examples: Sequence[Example], out_dir: Path,
               summary: Optional[Dict[str, Any]] = None) -> List[WarmupCheckpoint]:
    """Train LoRA on a fraction of the candidates (skipped when every checkpoint exists)."""
    from jz3.train.entry import run_training

    epochs = warmup_epochs(trainer)
    out_dir = Path(out_dir)
    want = [out_dir / ckpt_name(e) for e in range(1, epochs + 1)]
    subset = warmup_subset(examples, influence.warmup_fraction, influence.warmup_sample_seed)
    data_file = out_dir / "data.jsonl"
    job = warmup_job(seed, model, trainer, deepspeed, data, data_file, out_dir)
    if summary is not None:
        summary.update(warmup_summary(job, influence, len(subset), len(examples)))
    if all((d / "meta.json").exists() for d in want):
        log.info("warmup: all %d checkpoints exist in %s, skipping", len(want), out_dir)
        return load_checkpoints(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(data_file, ({"input": e.input, "output": e.output} if e.input else
                            {"text": e.output} for e in subset))
    log.info("warmup: LoRA r=%d on %d of %d candidates, %d epochs, lr %.2e, batch %d, %d tokens",
             influence.lora.r, len(subset), len(examples), epochs, trainer.lr,
             trainer.global_batch_size, data.seq_len)
    cb = LoraDumpCallback(out_dir, epochs, save_base=model.path is None)
    run_training(job, callbacks=[cb], model_transform=lambda m: apply_lora(m, influence.lora))
    missing = [str(d) for d in want if not (d / "meta.json").exists()]
    if missing:
        raise RuntimeError(f"warmup finished without checkpoints {missing} (preempted?)")
    return load_checkpoints(out_dir)


def load_checkpoints(out_dir: Path | str) -> List[WarmupCheckpoint]:
    """Every complete `ckpt-*` folder, in epoch order."""
    out = []
    for d in sorted(Path(out_dir).glob(f"{CKPT_PREFIX}*")):
        if not (d / "meta.json").exists():
            continue
        meta = json.loads((d / "meta.json").read_text())
        adam = load_file(str(d / "adam.safetensors"))
        mom = AdamMoments(
            exp_avg={k[len("exp_avg."):]: v for k, v in adam.items() if k.startswith("exp_avg.")},
            exp_avg_sq={k[len("exp_avg_sq."):]: v for k, v in adam.items()
                        if k.startswith("exp_avg_sq.")},
            beta1=meta["beta1"], beta2=meta["beta2"], eps=meta["eps"])
        out.append(WarmupCheckpoint(d.name, d, meta["step"], meta["lr_mean"],
                                    load_file(str(d / "lora.safetensors")), mom))
    if not out:
        raise FileNotFoundError(f"{out_dir}: no warmup checkpoints (ckpt-*/meta.json)")
    return out


def build_feature_model(model_cfg: ModelConfig, lora_cfg: Any, warmup_dir: Path | str) -> Any:
    """The base model of the warmup (from path, or the saved base weights) with LoRA, no dropout."""
    from jz3.models import build_model

    model = build_model(model_cfg)
    base = Path(warmup_dir) / "base.safetensors"
    if model_cfg.path is None:
        if not base.exists():
            raise FileNotFoundError(f"{base}: base weights of the warmup model are missing")
        sd = load_file(str(base))
        missing, unexpected = model.load_state_dict(
            {k.split("base_model.model.", 1)[-1].replace(".base_layer.", "."): v
             for k, v in sd.items()}, strict=False)
        if unexpected or [k for k in missing if "lora_" not in k]:
            raise KeyError(f"{base}: missing={missing[:5]} unexpected={unexpected[:5]}")
    model = apply_lora(model, lora_cfg, dropout=0.0)
    model.eval()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(dev)
