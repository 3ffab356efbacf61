"""LoRA warmup through the project trainer, dumping LoRA weights + Adam moments per epoch.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch
from safetensors.torch import load_file, save_file

from jz3.config.data import DataSource
from jz3.config.enums import Schedule, TrainMode
from jz3.config.root import JZ3Config
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


def _moment(state: TrainState, p: torch.nn.Parameter, key: str) -> torch.Tensor:
    engine = state.engine
    if getattr(engine, "kind", None) is not None and engine.kind.value == "deepspeed":
        from deepspeed.utils import safe_get_full_optimizer_state

        t = safe_get_full_optimizer_state(p, key)
    else:
        t = state.optimizer.state[p][key]
    return t.detach().float().cpu().contiguous()


def _mean_lr(metrics_file: Path, first: int, last: int) -> float:
    """Mean `lr` of steps first..last from the trainer's metrics.jsonl (last line per step wins)."""
    lrs: Dict[int, float] = {}
    if metrics_file.exists():
        for line in metrics_file.read_text().splitlines():
            rec = json.loads(line)
            if "lr" in rec and first <= int(rec.get("step", -1)) <= last:
                lrs[int(rec["step"])] = float(rec["lr"])
    if not lrs:
        raise RuntimeError(f"{metrics_file}: no lr logged for steps {first}..{last}")
    return sum(lrs.values()) / len(lrs)


class LoraDumpCallback(Callback):
    """At the end of every warmup epoch, write the LoRA weights and Adam moments."""

    def __init__(self, out_dir: Path, epochs: int, save_base: bool):
        self.out_dir, self.epochs, self.save_base = Path(out_dir), epochs, save_base
        self.bounds: Dict[int, int] = {}

    def on_train_start(self, state: TrainState) -> None:
        total = state.total_steps
        self.bounds = {max(1, round(total * e / self.epochs)): e for e in range(1, self.epochs + 1)}
        base = self.out_dir / "base.safetensors"
        if self.save_base and state.dist.is_main and not base.exists():
            sd = {k: v.detach().cpu().contiguous() for k, v in state.model.state_dict().items()
                  if "lora_" not in k}
            save_file(sd, str(base))

    def on_step_end(self, state: TrainState, metrics: Dict[str, float]) -> None:
        epoch = self.bounds.get(state.step)
        if epoch is None:
            return
        d = self.out_dir / ckpt_name(epoch)
        if (d / "meta.json").exists():
            return
        mods = lora_linears(state.model)
        lora = {n: m.weight.detach().float().cpu().contiguous() for n, m in mods.items()}
        adam: Dict[str, torch.Tensor] = {}
        for n, m in mods.items():
            adam[f"exp_avg.{n}"] = _moment(state, m.weight, "exp_avg")
            adam[f"exp_avg_sq.{n}"] = _moment(state, m.weight, "exp_avg_sq")
        if not state.dist.is_main:
            return
        prev = max([s for s in self.bounds if s < state.step], default=0)
        group = state.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        meta = {"epoch": epoch, "step": state.step,
                "lr_mean": _mean_lr(state.output_dir / "metrics.jsonl", prev + 1, state.step),
                "beta1": float(beta1), "beta2": float(beta2), "eps": float(group["eps"])}
        d.mkdir(parents=True, exist_ok=True)
        save_file(lora, str(d / "lora.safetensors"))
        save_file(adam, str(d / "adam.safetensors"))
        atomic_write_text(d / "meta.json", json.dumps(meta, indent=1))
        log.info("warmup checkpoint %s: step %d, mean lr %.3e", d, state.step, meta["lr_mean"])


def warmup_subset(examples: Sequence[Example], fraction: float, seed: int) -> List[Example]:
    """A seeded random `fraction` of the candidates (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"influence.warmup_fraction={fraction} must be in (0, 1]")
    k = max(1, round(fraction * len(examples)))
    idx = sorted(random.Random(seed).sample(range(len(examples)), k))
    return [examples[i] for i in idx]


def warmup_config(cfg: JZ3Config, data_file: Path, out_dir: Path) -> JZ3Config:
    """The trainer config of the warmup: LESS recipe (linear schedule, 3% warmup, epochs, lr)."""
    c = copy.deepcopy(cfg)
    ic = cfg.influence
    c.data.sources = [DataSource(name="warmup", path=str(data_file), weight=1.0)]
    c.data.packed_dir = str(out_dir / "packed")
    t = c.trainer
    t.mode, t.output_dir, t.lr = TrainMode.sft, str(out_dir / "train"), ic.warmup_lr
    t.schedule, t.warmup_ratio, t.min_lr_ratio = Schedule.linear, 0.03, 0.0
    t.max_steps, t.epochs, t.export_hf, t.init_from = -1, float(ic.warmup_epochs), False, None
    t.weight_decay = 0.0
    return c


def run_warmup(cfg: JZ3Config, examples: Sequence[Example], out_dir: Path) -> List[WarmupCheckpoint]:
    """Train LoRA on a fraction of the candidates (skipped when every checkpoint exists)."""
    from jz3.train.entry import run_training

    ic = cfg.influence
    out_dir = Path(out_dir)
    want = [out_dir / ckpt_name(e) for e in range(1, ic.warmup_epochs + 1)]
    if all((d / "meta.json").exists() for d in want):
        log.info("warmup: all %d checkpoints exist in %s, skipping", len(want), out_dir)
        return load_checkpoints(out_dir)
    subset = warmup_subset(examples, ic.warmup_fraction, cfg.seed)
    data_file = out_dir / "data.jsonl"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(data_file, ({"input": e.input, "output": e.output} if e.input else
                            {"text": e.output} for e in subset))
    log.info("warmup: LoRA r=%d on %d of %d candidates, %d epochs, lr %.2e",
             ic.lora.r, len(subset), len(examples), ic.warmup_epochs, ic.warmup_lr)
    wcfg = warmup_config(cfg, data_file, out_dir)
    cb = LoraDumpCallback(out_dir, ic.warmup_epochs, save_base=cfg.model.path is None)
    run_training(wcfg, callbacks=[cb], model_transform=lambda m: apply_lora(m, ic.lora))
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


def build_feature_model(cfg: JZ3Config, warmup_dir: Path | str) -> Any:
    """The base model of the warmup (from path, or the saved base weights) with LoRA, no dropout."""
    from jz3.models import build_model

    model = build_model(cfg.model)
    base = Path(warmup_dir) / "base.safetensors"
    if cfg.model.path is None:
        if not base.exists():
            raise FileNotFoundError(f"{base}: base weights of the warmup model are missing")
        sd = load_file(str(base))
        missing, unexpected = model.load_state_dict(
            {k.split("base_model.model.", 1)[-1].replace(".base_layer.", "."): v
             for k, v in sd.items()}, strict=False)
        if unexpected or [k for k in missing if "lora_" not in k]:
            raise KeyError(f"{base}: missing={missing[:5]} unexpected={unexpected[:5]}")
    model = apply_lora(model, cfg.influence.lora, dropout=0.0)
    model.eval()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(dev)
