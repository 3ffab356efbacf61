"""SFT / distillation reuse the trainer in-process (plain torch): loss only on outputs (~15 s)."""

from __future__ import annotations

import json

import torch

from jz3.config import compose
from jz3.config.enums import TrainMode
from jz3.data.packed_dataset import MixedPackedDataset
from jz3.data.packing import pack_sources
from jz3.data.sampler import MixtureSampler
from jz3.data.tokenizers import load_tokenizer
from jz3.train.entry import run_training, set_tf32
from jz3.train.loss import target_count


def test_distill_on_kd_records_trains_on_completions_only(tmp_path, tiny_tokenizer_dir, shared_data):
    kd = tmp_path / "kd"
    kd.mkdir()
    rows = [json.loads(x) for x in (shared_data / "jiuzhang3_samples" / "finetune_sampled.jsonl")
            .read_text().splitlines()[:12]]
    with open(kd / "part-00000-of-00001.jsonl", "w") as fh:
        for i, r in enumerate(rows):
            fh.write(json.dumps({"id": f"kd{i}", "snippet_id": f"s{i}", "prompt_type": "grade_school",
                                 "prompt": r["input"], "completion": r["output"], "problem": r["input"],
                                 "solution": r["output"], "model": "teacher"}) + "\n")
    cfg = compose(["+exp=tiny_distill", "deepspeed@stages.distill.deepspeed=none", f"run_dir={tmp_path}",
                   f"stages.distill.data.tokenizer.path={tiny_tokenizer_dir}", f"stages.distill.data.sources=[{{name: kd, path: '{kd}'}}]",
                   "stages.distill.data.seq_len=128", "stages.distill.data.num_workers=0", "stages.distill.trainer.max_steps=-1", "stages.distill.trainer.epochs=1",
                   "stages.distill.trainer.micro_batch_size=4", "stages.distill.trainer.save_every=0"]
                  ).stages.distill
    assert cfg.trainer.mode == TrainMode.distill
    pack_sources(cfg.data, load_tokenizer(cfg.data.tokenizer), cfg.data.packed_dir)
    data = MixedPackedDataset(cfg.data.packed_dir, cfg.data.seq_len)
    n = len(data) - len(data) % 4
    cfg.trainer.global_batch_size = n  # step 1 = the first n sequences of the stream
    res = run_training(cfg)
    assert res.steps == (2 if n < len(data) else 1)
    first = json.loads(open(res.log_file).readline())
    stream = MixtureSampler(data.lengths, [1.0], seed=cfg.trainer.seed)
    step1 = [stream.index(k) for k in range(n)]
    expected = sum(target_count(torch.as_tensor(data[i]["labels"])[None]) for i in step1)
    tokens = sum(int((torch.as_tensor(data[i]["input_ids"]) != 3).sum()) for i in step1)
    assert first["target_tokens"] == expected  # exactly the unmasked labels of that batch
    assert expected < 0.9 * tokens  # the prompts (and first tokens of segments) carry no loss
    assert res.hf_export_dir and res.final_loss < first["loss"]


def test_mixtral_with_gradient_checkpointing_logs_router_aux_loss(tmp_path, tiny_tokenizer_dir):
    cfg = compose(["+exp=tiny_pretrain", "model@stages.pretrain.model=tiny_mixtral", "stages.pretrain.model.gradient_checkpointing=true",
                   "deepspeed@stages.pretrain.deepspeed=none", f"run_dir={tmp_path}", f"stages.pretrain.data.tokenizer.path={tiny_tokenizer_dir}",
                   "stages.pretrain.data.seq_len=64", "stages.pretrain.data.num_workers=0", "stages.pretrain.trainer.max_steps=3", "stages.pretrain.trainer.global_batch_size=4",
                   "stages.pretrain.trainer.save_every=0", "stages.pretrain.trainer.export_hf=false",
                   "stages.pretrain.trainer.tf32=false"]
                  ).stages.pretrain
    seen = {}
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    set_tf32(True)  # the run sets it from trainer.tf32 (the release's --tf32)

    from jz3.train.callbacks import Callback

    class Probe(Callback):
        def on_train_start(self, state):
            m = state.model
            gc = getattr(m, "is_activation_checkpointing", None)
            seen["gc"] = (m.is_gradient_checkpointing if gc is None else gc) and m.training
            seen["tf32"] = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32

    try:
        res = run_training(cfg, callbacks=[Probe()])
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    rows = [json.loads(x) for x in open(res.log_file)]
    assert seen["gc"] and res.steps == 3 and res.hf_export_dir is None
    assert seen["tf32"] is False
    assert all(r["aux_loss"] > 0 for r in rows)  # Mixtral load-balancing loss is in the objective
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_loaded_mixtral_checkpoint_adds_its_router_aux_loss(tmp_path, tiny_tokenizer_dir):
    """A Mixtral checkpoint saved with router logits off (as released checkpoints are) trains
    with its load-balancing loss once loaded (`model.output_router_logits`, the release's
    train_pack.py); with the knob off the loss has no aux term."""
    from jz3.config.model import ModelConfig
    from jz3.models.build import build_model, hf_config_from

    mc = compose(["+exp=tiny_pretrain", "model@stages.pretrain.model=tiny_mixtral"]).stages.pretrain.model
    hf = hf_config_from(ModelConfig(**{**mc.__dict__, "output_router_logits": False}))
    ckpt = tmp_path / "mixtral"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_config(hf).save_pretrained(ckpt)
    assert json.loads((ckpt / "config.json").read_text())["output_router_logits"] is False
    loaded = build_model(mc, path=str(ckpt))
    assert loaded.config.output_router_logits is True
    assert loaded(input_ids=torch.tensor([[5, 6, 7, 8]])).aux_loss is not None

    def run(flag: bool):
        job = compose(["+exp=tiny_pretrain", "model@stages.pretrain.model=tiny_mixtral",
                       f"stages.pretrain.model.output_router_logits={str(flag).lower()}",
                       f"stages.pretrain.trainer.init_from={ckpt}",
                       "deepspeed@stages.pretrain.deepspeed=none", f"run_dir={tmp_path / str(flag)}",
                       f"stages.pretrain.data.tokenizer.path={tiny_tokenizer_dir}",
                       "stages.pretrain.data.seq_len=64", "stages.pretrain.data.num_workers=0",
                       "stages.pretrain.trainer.max_steps=1", "stages.pretrain.trainer.global_batch_size=2",
                       "stages.pretrain.trainer.save_every=0", "stages.pretrain.trainer.export_hf=false"]
                      ).stages.pretrain
        return [json.loads(x) for x in open(run_training(job).log_file)]

    on, off = run(True), run(False)
    assert on[0]["aux_loss"] > 0 and "aux_loss" not in off[0]


def test_distill_checkpoints_at_every_epoch_and_keeps_five(tmp_path, tiny_tokenizer_dir):
    """`trainer.save_every_epoch` (the release's synthesizer: --save_strategy epoch,
    --save_total_limit 5): a checkpoint at each epoch's last step, the newest `keep_last` kept."""
    from jz3.train.checkpoint import ckpt_root
    from jz3.train.entry import epoch_end_steps

    assert epoch_end_steps(10, 5) == {2, 4, 6, 8, 10} and epoch_end_steps(3, 5) == {1, 2, 3}
    src = tmp_path / "few.jsonl"
    src.write_text("".join(json.dumps({"input": f"Question {i}? ", "output": f"Answer {i}."}) + "\n"
                           for i in range(8)))
    job = compose(["+exp=tiny_pretrain", "deepspeed@stages.pretrain.deepspeed=none",
                   f"stages.pretrain.data.sources=[{{name: few, path: '{src}'}}]",
                   "stages.pretrain.data.tail_sources=[]", "stages.pretrain.data.packing=none",
                   f"run_dir={tmp_path}", f"stages.pretrain.data.tokenizer.path={tiny_tokenizer_dir}",
                   "stages.pretrain.data.seq_len=64", "stages.pretrain.data.num_workers=0",
                   "stages.pretrain.trainer.max_steps=-1", "stages.pretrain.trainer.epochs=3",
                   "stages.pretrain.trainer.save_every=0", "stages.pretrain.trainer.save_every_epoch=true",
                   "stages.pretrain.trainer.keep_last=2", "stages.pretrain.trainer.export_hf=false"]
                  ).stages.pretrain
    job.trainer.global_batch_size = job.trainer.micro_batch_size = 4  # 8 rows: 2 steps an epoch
    res = run_training(job)
    ends = sorted(epoch_end_steps(res.steps, 3))
    kept = sorted(int(p.name.split("-")[1]) for p in ckpt_root(res.output_dir).glob("step-*"))
    assert len(ends) == 3 and kept == ends[-2:]
