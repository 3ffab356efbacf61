"""Megatron-style tensor parallelism through DeepSpeed AutoTP training on 2 gloo CPU ranks:
TP=2 (ZeRO-1) and TP=1 (plain torch, 1 rank) give the same losses on the same global batch;
the layers really are sharded; the gathered export loads (~1 min)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.dist_harness import metrics_by_step, probe_batch, result_of, run_harness

pytestmark = pytest.mark.slow

STEPS = 5


def overrides(run_dir, tok_dir, packed_dir):
    return ["+exp=tiny_pretrain", f"run_dir={run_dir}", f"stages.pretrain.data.tokenizer.path={tok_dir}",
            f"stages.pretrain.data.packed_dir={packed_dir}", "stages.pretrain.data.seq_len=64", "stages.pretrain.data.num_workers=0",
            f"stages.pretrain.trainer.max_steps={STEPS}", "stages.pretrain.trainer.global_batch_size=8", "stages.pretrain.trainer.micro_batch_size=2",
            "stages.pretrain.trainer.save_every=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_tokenizer_dir):
    base = tmp_path_factory.mktemp("autotp")
    packed = base / "packed"
    tp1 = result_of(run_harness(overrides(base / "tp1", tiny_tokenizer_dir, packed) + ["deepspeed@stages.pretrain.deepspeed=none"]))
    tp2 = result_of(run_harness(overrides(base / "tp2", tiny_tokenizer_dir, packed) + ["deepspeed@stages.pretrain.deepspeed=zero3_tp2"],
                                ["--shapes-out", str(base / "shapes"), "--logits-out", str(base / "tp2_logits.pt")],
                                ranks=2))
    return {"tp1": tp1, "tp2": tp2, "base": base}


def test_layers_are_sharded_over_two_ranks(runs):
    for r in (0, 1):
        info = json.loads((runs["base"] / f"shapes.rank{r}").read_text())
        # hidden 64, 4 heads of 16, 2 kv heads, intermediate 176: column-parallel halves the rows,
        # row-parallel halves the columns.
        assert info["local"]["self_attn.q_proj.weight"] == [32, 64]
        assert info["local"]["self_attn.k_proj.weight"] == [16, 64]
        assert info["local"]["self_attn.o_proj.weight"] == [64, 32]
        assert info["local"]["mlp.down_proj.weight"] == [64, 88]
        assert info["types"]["self_attn.o_proj"] == "LinearAllreduce"
        assert info["types"]["mlp.gate_proj"] == "LinearLayer"


def test_tp2_losses_match_tp1(runs):
    one = metrics_by_step(runs["tp1"]["log_file"])
    two = metrics_by_step(runs["tp2"]["log_file"])
    assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))
    for s in one:
        assert two[s]["target_tokens"] == one[s]["target_tokens"]
        assert two[s]["loss"] == pytest.approx(one[s]["loss"], rel=1e-4), s
        assert two[s]["grad_norm"] == pytest.approx(one[s]["grad_norm"], rel=1e-3), s
    assert one[STEPS]["loss"] < one[1]["loss"]


def test_tp2_export_gathers_full_weights(runs):
    from transformers import AutoModelForCausalLM

    from jz3.models.attention import document_forward_kwargs

    model = AutoModelForCausalLM.from_pretrained(runs["tp2"]["hf_export_dir"], local_files_only=True).eval()
    assert tuple(model.model.layers[0].self_attn.q_proj.weight.shape) == (64, 64)
    b = probe_batch()
    with torch.no_grad():
        logits = model(input_ids=b["input_ids"], **document_forward_kwargs(b["position_ids"], "sdpa")).logits
    torch.testing.assert_close(logits.float(), torch.load(runs["base"] / "tp2_logits.pt"), rtol=0, atol=1e-5)
