"""`run_training(job) -> TrainResult`: the one entry for pretraining, SFT and distillation.

    from jz3.train.entry import run_training
    job = compose(["+exp=tiny_pretrain"]).stages.pretrain   # a TrainJob: seed, model, data,
    result = run_training(job, callbacks=[MyCallback()], model_transform=add_lora)  # trainer, ds

`train_stage(job, out_dir, mode, sources=..., init_from=...)` is the body of the pipeline's
training stages: the job as configured, with its inputs (upstream data, an upstream export to
start from) passed as arguments, writing under `out_dir` (the config is never modified).

- `deepspeed.enabled=true`: ZeRO (stage from config, 3 = model built partitioned) in one process
  or under `deepspeed --num_gpus N launch/pretrain.py ...` / `srun` (gloo on CPU ranks).
- `deepspeed.enabled=false`: plain torch, one process.
- `callbacks`: extra `jz3.train.callbacks.Callback`s (hooks on_train_start, on_step_end(state,
  metrics), on_save(state, ckpt_dir), on_train_end); `state.model` / `state.optimizer` /
  `state.engine` give access to the module and the optimizer (e.g. to dump LoRA Adam moments
  at every save: `optimizer.state[p]` for plain torch,
  `deepspeed.utils.safe_get_full_optimizer_state(p, "exp_avg")` under DeepSpeed).
- `model_transform(model) -> model`: applied after the model is built, before the optimizer
  (e.g. wrap it with peft LoRA; only parameters with requires_grad are optimised).
Resumes from `<output_dir>/checkpoints/latest` when `trainer.resume` (model, optimizer,
scheduler, RNG, sampler). Writes `<output_dir>/metrics.jsonl`, `<output_dir>/hf` (gathered HF
folder with the tokenizer) and `<output_dir>/train_result.json`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, List, Optional, Set

import torch

from jz3.config.data import DataSource
from jz3.config.enums import Precision, TrainMode
from jz3.config.stages import TrainJob
from jz3.config.trainer import TrainerConfig
from jz3.config.validate import check
from jz3.data.records import atomic_write_text
from jz3.data.tokenizers import load_tokenizer
from jz3.models import build_model, flops_per_token, hidden_size_of, resolve_attn_impl
from jz3.models.build import router_aux_coef
from jz3.parallel.dist import DistInfo, barrier, init_distributed
from jz3.parallel.ds_config import batch_layout, build_ds_config
from jz3.train import checkpoint as ckpt
from jz3.train.callbacks import Callback, CallbackList, TrainState
from jz3.train.data import build_train_data, open_dataset, prepare_packed
from jz3.train.engine import DeepSpeedEngine, TorchEngine
from jz3.train.result import HF_DIR, TrainResult, train_dir
from jz3.train.tracking import ConsoleCallback, MetricsFileCallback, WandbCallback
from jz3.train.trainer import Trainer

log = logging.getLogger(__name__)

# Set by launch/slurm/pretrain.sbatch: a file rank 0 writes when it stopped on a preemption
# signal, so that the batch script requeues the job (which then resumes from the checkpoint).
PREEMPT_MARKER_ENV = "JZ3_PREEMPT_MARKER"

# Dense bf16 peak per device, for MFU when trainer.peak_tflops is unset.
GPU_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A800": 312.0, "H800": 989.0,
                   "L40S": 362.0, "A10": 125.0}


class TrainingPreempted(RuntimeError):
    """The run stopped on a preemption signal after saving a checkpoint (rerun to resume)."""


def total_steps(cfg: TrainerConfig, num_sequences: int) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    steps = int(math.ceil(cfg.epochs * num_sequences / cfg.global_batch_size))
    if steps <= 0:
        raise ValueError(f"trainer.epochs={cfg.epochs} over {num_sequences} sequences gives no step")
    return steps


def epoch_end_steps(total: int, epochs: float) -> Set[int]:
    """The optimizer steps that end each whole epoch of a `total`-step run over `epochs`."""
    if epochs <= 0 or total <= 0:
        return set()
    return {min(total, max(1, round(total * e / epochs))) for e in range(1, int(epochs) + 1)}


def peak_flops(cfg: TrainerConfig) -> Optional[float]:
    if cfg.peak_tflops:
        return cfg.peak_tflops * 1e12
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, tf in GPU_PEAK_TFLOPS.items():
            if key in name:
                return tf * 1e12
    return None


def model_dtype(precision: Precision, use_deepspeed: bool) -> torch.dtype:
    """DeepSpeed keeps fp32 masters itself: build in the compute dtype. Plain torch: fp32 + autocast."""
    if not use_deepspeed:
        return torch.float32
    return {Precision.bf16: torch.bfloat16, Precision.fp16: torch.float16}.get(precision, torch.float32)


def set_tf32(enabled: bool) -> None:
    """What HF Trainer's `--tf32` sets: fp32 matmuls and cuDNN convolutions may use TF32 (on
    Ampere+ GPUs; the flags are inert on CPU)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _load_tokenizer(cfg: TrainJob, info: DistInfo) -> Any:
    # A missing sentencepiece model is trained by load_tokenizer: only rank 0 does it (run_dir is
    # on a shared filesystem across nodes).
    tok = load_tokenizer(cfg.data.tokenizer) if info.rank == 0 else None
    barrier()
    return tok if tok is not None else load_tokenizer(cfg.data.tokenizer)


def export_hf(engine: Any, tokenizer: Any, out: Path, precision: Precision, info: DistInfo) -> Optional[Path]:
    """Gathered HF folder (config, safetensors, tokenizer); collective under DeepSpeed."""
    sd = engine.full_state_dict()
    if info.is_main:
        assert sd is not None
        if precision != Precision.fp32:
            dt = torch.bfloat16 if precision == Precision.bf16 else torch.float16
            sd = {k: v.to(dt) if v.is_floating_point() else v for k, v in sd.items()}
        model = engine.module
        model.config.use_cache = True
        # written beside `out`, renamed into place when complete; removed on any error
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            model.save_pretrained(str(tmp), state_dict=sd)
            tokenizer.save_pretrained(str(tmp))
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("exported HF model + tokenizer to %s", out)
    barrier()
    return out


def run_training(cfg: TrainJob, callbacks: Optional[List[Callback]] = None,
                 model_transform: Optional[Callable[[Any], Any]] = None,
                 output_dir: Optional[str | Path] = None) -> TrainResult:
    """Train `cfg` (a TrainJob, or anything with its fields); writes under `output_dir`
    (default `cfg.trainer.output_dir`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check(cfg)  # range checks (jz3.config.validate): `trainer.lr must be >= 0, got ...`
    t_start = time.time()
    tc, dsc = cfg.trainer, cfg.deepspeed
    info = init_distributed(dsc.enabled)
    if info.world_size > 1 and not dsc.enabled:
        raise ValueError("world size > 1 needs deepspeed.enabled=true (plain torch runs one process)")
    torch.manual_seed(tc.seed)
    set_tf32(tc.tf32)
    out = Path(output_dir if output_dir is not None else tc.output_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)

    tokenizer = _load_tokenizer(cfg, info)
    if len(tokenizer) > cfg.model.vocab_size and cfg.model.path is None and tc.init_from is None:
        raise ValueError(f"model.vocab_size={cfg.model.vocab_size} < tokenizer size {len(tokenizer)}")
    from jz3.data.packed_dataset import as_packing

    dataset = open_dataset(cfg.data, prepare_packed(cfg.data, tokenizer, info.rank))
    steps = total_steps(tc, len(dataset))
    layout = batch_layout(tc, info.world_size, dsc.autotp_size if dsc.enabled else 1)
    log.info("mode=%s: %d sequences of %d tokens (packing %s), %d steps, global batch %d = %d "
             "micro x %d accum x %d dp", tc.mode.value, len(dataset), dataset.row_len,
             as_packing(cfg.data.packing).value, steps, layout.global_batch,
             layout.micro_batch, layout.grad_accum, layout.dp_world)

    ds_config = (build_ds_config(dsc, tc, info.world_size, hidden_size_of(cfg.model, tc.init_from))
                 if dsc.enabled else None)
    model = build_model(cfg.model, model_dtype(tc.precision, dsc.enabled), ds_config, path=tc.init_from)
    aux_coef = router_aux_coef(model, cfg.model)
    if model_transform is not None:
        model = model_transform(model)
    model.train()
    if dsc.enabled:
        assert ds_config is not None
        engine: Any = DeepSpeedEngine(model, tc, steps, ds_config, info)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        autocast = None if tc.precision == Precision.fp32 else (
            torch.bfloat16 if tc.precision == Precision.bf16 else torch.float16)
        engine = TorchEngine(model, tc, steps, device, autocast)

    state = TrainState(total_steps=steps, dist=info, output_dir=out, model=engine.module,
                       optimizer=engine.optimizer, engine=engine)
    sampler_state = None
    latest = ckpt.latest_checkpoint(out) if tc.resume else None
    if latest is not None:
        saved = ckpt.read_trainer_state(latest)
        if saved["engine"] != engine.kind.value:
            raise ValueError(f"{latest}: saved by the {saved['engine']} engine, this run uses {engine.kind.value}")
        engine.load(latest)
        ckpt.load_rank_files(latest, info.rank)
        state.step, state.tokens_seen, state.samples_seen = saved["step"], saved["tokens_seen"], saved["samples_seen"]
        sampler_state = saved["sampler"]
        log.info("resumed from %s (step %d, %d samples consumed)", latest, state.step, state.samples_seen)
    data_seed = tc.seed if tc.data_seed is None else tc.data_seed
    data = build_train_data(cfg.data, dataset, layout.micro_batch, data_seed, engine.data_parallel_rank,
                            engine.data_parallel_world, sampler_state)

    log_file = out / "metrics.jsonl"
    cbs = CallbackList([MetricsFileCallback(log_file), ConsoleCallback(tc.log_every),
                        WandbCallback(tc.wandb, cfg), *(callbacks or [])])
    trainer = Trainer(engine, data, state, cbs, grad_accum=layout.grad_accum,
                      global_batch=layout.global_batch, seq_len=dataset.row_len,
                      attn_impl=resolve_attn_impl(cfg.model.attn_impl),
                      tp_size=dsc.autotp_size if dsc.enabled else 1, save_every=tc.save_every,
                      save_steps=(epoch_end_steps(steps, tc.epochs if tc.max_steps <= 0 else 0)
                                  if tc.save_every_epoch else set()),
                      keep_last=tc.keep_last, flops_per_token=flops_per_token(cfg.model, cfg.data.seq_len),
                      peak_flops=peak_flops(tc), aux_loss_coef=aux_coef)
    if latest is not None:
        trainer.last_saved_step = state.step
    state = trainer.fit()

    hf_dir = None
    if tc.export_hf and not state.stop_requested:
        hf_dir = export_hf(engine, tokenizer, out / HF_DIR, tc.precision, info)
    latest = ckpt.latest_checkpoint(out)
    final_loss = state.last_metrics.get("loss")
    if final_loss is None and info.is_main and log_file.exists():  # resumed a finished run
        lines = log_file.read_text().splitlines()
        final_loss = json.loads(lines[-1])["loss"] if lines else None
    result = TrainResult(
        output_dir=str(out), hf_export_dir=str(hf_dir) if hf_dir else None,
        final_loss=float("nan") if final_loss is None else float(final_loss), steps=state.step,
        log_file=str(log_file), checkpoint_dir=str(latest) if latest else None,
        tokens_seen=state.tokens_seen, preempted=state.stop_requested, wall_s=time.time() - t_start,
        seed=cfg.trainer.seed)
    if info.is_main:
        atomic_write_text(out / "train_result.json", json.dumps(asdict(result), indent=1))
        marker = os.environ.get(PREEMPT_MARKER_ENV)
        if result.preempted and marker:  # launch/slurm/pretrain.sbatch requeues the job
            atomic_write_text(marker, result.checkpoint_dir or "")
    return result


def train_stage(job: TrainJob, out_dir: str | Path, mode: TrainMode,
                sources: Optional[List[DataSource]] = None, init_from: Optional[str] = None,
                packed_dir: Optional[str | Path] = None,
                callbacks: Optional[List[Callback]] = None) -> TrainResult:
    """A training stage: `job` with its inputs as arguments; raises unless it ended exported.

    `sources` None = the job's own `data.sources`; `init_from` None = `trainer.init_from`;
    checkpoints, metrics and the HF export (`export_path(out_dir)`) go to `out_dir/train`, packed data to
    `packed_dir` (default `out_dir/packed`)."""
    import dataclasses

    out = Path(out_dir)
    data = dataclasses.replace(job.data, sources=list(sources if sources is not None
                                                      else job.data.sources),
                               packed_dir=str(packed_dir or out / "packed"))
    trainer = dataclasses.replace(job.trainer, mode=mode,
                                  init_from=init_from or job.trainer.init_from)
    run = dataclasses.replace(job, data=data, trainer=trainer)
    res = run_training(run, callbacks=callbacks, output_dir=train_dir(out))
    if res.preempted:
        raise TrainingPreempted(f"{out}: preempted at step {res.steps}, checkpoint "
                                f"{res.checkpoint_dir}; rerun (or requeue) to resume from it")
    if not res.hf_export_dir:
        raise RuntimeError(f"{out}: training ended at step {res.steps} without an HF export "
                           "(trainer.export_hf=false?); later stages need the export")
    return res
