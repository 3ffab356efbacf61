"""LR schedules, batch layout and the DeepSpeed config built from the typed configs (fast)."""

from __future__ import annotations

import math

import pytest
import torch

from jz3.config import compose
from jz3.config.deepspeed import DeepSpeedConfig
from jz3.config.enums import Precision, Schedule
from jz3.config.trainer import TrainerConfig
from jz3.parallel.ds_config import batch_layout, build_ds_config
from jz3.train.entry import total_steps
from jz3.train.schedules import build_scheduler, multiplier


def curve(schedule, total=1000, **kw):
    args = dict(warmup_ratio=0.03, stable_ratio=0.85, min_lr_ratio=0.1) | kw
    return [multiplier(i, total, schedule, **args) for i in range(total)]


def test_wsd_is_jiuzhang_shape():
    m = curve(Schedule.wsd)
    assert m[0] == pytest.approx(1 / 30) and m[29] == 1.0  # 3% linear warmup
    assert all(x == 1.0 for x in m[30:880])  # 85% stable
    decay = m[880:]
    assert all(a > b for a, b in zip(decay[:-1], decay[1:], strict=True))  # then strictly decreasing
    assert m[-1] == pytest.approx(0.1)  # down to 0.1x lr


def _release_wsd(t: int, n: int, warmup_ratio: float = 0.03, stable_ratio: float = 0.85) -> float:
    """JiuZhang3.0 `src/utils/train_utils.py` `get_wsd_scheduler` (HF warmup = ceil(r * N))."""
    w = math.ceil(warmup_ratio * n)
    if t < w:
        return t / max(1, w)
    s = stable_ratio * n
    if t < s:
        return 1.0
    return max(0.1, (n - t) / max(1, n - s))


@pytest.mark.parametrize("total", [1000, 4567, 20000])
def test_wsd_decay_clip_is_the_release_schedule(total):
    """The jz3_* preset (3% warmup + 82% stable, min 0.1, decay_clip) equals the release's
    max(0.1, (N - t) / (0.15 N)) after the warmup: decay from 85%, 0.1x from 98.5% on."""
    t = compose(["+exp=jz3_7b"]).stages.pretrain.trainer
    assert t.decay_clip and t.min_lr_ratio == 0.1
    ours = [multiplier(i, total, t.schedule, t.warmup_ratio, t.stable_ratio, t.min_lr_ratio,
                       t.decay_clip) for i in range(total)]
    span = 0.15 * total
    for i in range(math.ceil(0.03 * total), total):
        assert ours[i] == pytest.approx(_release_wsd(i, total), abs=2.01 / span), i  # <= 2 steps
    assert ours[int(0.84 * total)] == 1.0 and ours[int(0.92 * total)] == pytest.approx(
        0.08 / 0.15, abs=3 / span)
    floor = [i for i, m in enumerate(ours) if m == pytest.approx(0.1) and i > 0.5 * total]
    assert floor[0] == pytest.approx(0.985 * total, abs=2) and floor[-1] == total - 1
    assert all(m == pytest.approx(0.1) for m in ours[floor[0]:])  # held at the floor
    # without decay_clip the decay reaches 0.1 only at the last step
    plain = [multiplier(i, total, t.schedule, t.warmup_ratio, t.stable_ratio, 0.1)
             for i in range(total)]
    assert plain[-2] > 0.1 and plain[-1] == pytest.approx(0.1)


def test_cosine_and_linear_end_at_min_ratio():
    c, lin = curve(Schedule.cosine), curve(Schedule.linear)
    assert c[-1] == pytest.approx(0.1) and lin[-1] == pytest.approx(0.1)
    mid = 30 + (1000 - 30) // 2
    assert c[mid] == pytest.approx(0.55, abs=0.01) and lin[mid] == pytest.approx(0.55, abs=0.01)
    assert curve(Schedule.constant)[-1] == 1.0


def test_scheduler_drives_optimizer_lr():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=2.0)
    sched = build_scheduler(opt, TrainerConfig(lr=2.0, schedule=Schedule.wsd), 100)
    seen = []
    for _ in range(100):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(2.0 / 3) and seen[50] == 2.0 and seen[-1] == pytest.approx(0.2)


def test_batch_layout_and_errors_name_fields():
    t = TrainerConfig(global_batch_size=512, micro_batch_size=4)
    lay = batch_layout(t, world_size=64)
    assert (lay.grad_accum, lay.dp_world) == (2, 64)
    assert batch_layout(t, world_size=64, tp_size=2).grad_accum == 4
    with pytest.raises(ValueError, match="global_batch_size"):
        batch_layout(TrainerConfig(global_batch_size=10, micro_batch_size=4), world_size=1)


def test_ds_config_zero3_and_autotp():
    t = TrainerConfig(global_batch_size=32, micro_batch_size=2, grad_clip=1.0, precision=Precision.bf16)
    ds = build_ds_config(DeepSpeedConfig(zero_stage=3), t, world_size=8, hidden_size=4096)
    assert ds["train_batch_size"] == 32 and ds["gradient_accumulation_steps"] == 2
    assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert "tensor_parallel" not in ds and ds["gradient_clipping"] == 1.0
    tp = build_ds_config(DeepSpeedConfig(zero_stage=1, autotp_size=2), t, world_size=8,
                         hidden_size=64)
    assert tp["tensor_parallel"] == {"autotp_size": 2} and tp["gradient_accumulation_steps"] == 4
    with pytest.raises(ValueError, match="zero_stage"):
        build_ds_config(DeepSpeedConfig(zero_stage=3, autotp_size=2), t, world_size=8,
                        hidden_size=64)
    off = build_ds_config(DeepSpeedConfig(zero_stage=3, offload_optimizer=True, offload_param=True), t, 8,
                          64)
    assert off["zero_optimization"]["offload_param"]["device"] == "cpu"


def test_bucket_sizes_follow_the_hidden_size_like_the_release_auto_values():
    """configs/stage_*.json of the release leave the three sizes "auto"; HF Trainer fills them
    from the model's hidden size h: h^2, 0.9 h^2, 10 h. Set values are kept as they are."""
    t = TrainerConfig(global_batch_size=64, micro_batch_size=8)
    zero = build_ds_config(DeepSpeedConfig(zero_stage=3), t, 8, hidden_size=4096)["zero_optimization"]
    assert (zero["reduce_bucket_size"], zero["stage3_prefetch_bucket_size"],
            zero["stage3_param_persistence_threshold"]) == (16_777_216, 15_099_494, 40_960)
    z1 = build_ds_config(DeepSpeedConfig(zero_stage=1), t, 8, hidden_size=576)["zero_optimization"]
    assert z1["reduce_bucket_size"] == 331_776 and "stage3_prefetch_bucket_size" not in z1
    set_ = DeepSpeedConfig(zero_stage=3, reduce_bucket_size=5, stage3_prefetch_bucket_size=0,
                           stage3_param_persistence_threshold=7)
    zero = build_ds_config(set_, t, 8, hidden_size=4096)["zero_optimization"]
    assert (zero["reduce_bucket_size"], zero["stage3_prefetch_bucket_size"],
            zero["stage3_param_persistence_threshold"]) == (5, 0, 7)


def test_total_steps_from_epochs_or_max_steps():
    assert total_steps(TrainerConfig(max_steps=7), 10_000) == 7
    assert total_steps(TrainerConfig(max_steps=-1, epochs=5, global_batch_size=32), 100) == 16


def test_presets_compose_into_valid_ds_configs():
    # world sizes of hydra_configs/launcher/slurm.yaml: pretraining on 64 GPUs, the synthesizer
    # stages and sft on one 8-GPU node (global batch 32 = 2 micro x 2 accum x 8), the influence
    # warmup on one GPU
    for exp in ("jz3_7b", "jz3_8b", "jz3_8x7b", "synth_distill"):
        st = compose([f"+exp={exp}"]).stages
        jobs = [(st.distill, 8)] if exp == "synth_distill" else [
            (st.pretrain, 64), (st.sft, 8), (st.distill, 8), (st.distill_boost, 8),
            (st.influence, 1)]
        for job, world in jobs:
            ds = build_ds_config(job.deepspeed, job.trainer, world, job.model.hidden_size)
            assert ds["train_batch_size"] == job.trainer.global_batch_size
    d = compose(["+exp=synth_distill"]).stages.distill.trainer
    assert (d.lr, d.epochs, d.global_batch_size, d.schedule) == (1e-5, 5, 32, Schedule.cosine)
    assert compose(["+exp=synth_distill"]).stages.distill.data.seq_len == 2048
