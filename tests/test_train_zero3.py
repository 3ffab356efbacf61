"""DeepSpeed ZeRO-3 on gloo CPU ranks: 2 ranks vs 1 rank on the same global batch, kill -9 of a
2-rank job + resume, and the gathered HF export (three DeepSpeed launches, ~1-2 min)."""

from __future__ import annotations

import pytest
import torch

from tests.dist_harness import metric_lines, metrics_by_step, probe_batch, result_of, run_harness

pytestmark = pytest.mark.slow

STEPS, SAVE_EVERY, KILL_AT = 8, 4, 6


def overrides(run_dir, tok_dir, packed_dir):
    return ["+exp=tiny_pretrain", "deepspeed@stages.pretrain.deepspeed=zero3", f"run_dir={run_dir}",
            f"stages.pretrain.data.tokenizer.path={tok_dir}", f"stages.pretrain.data.packed_dir={packed_dir}", "stages.pretrain.data.seq_len=64",
            "stages.pretrain.data.num_workers=0", f"stages.pretrain.trainer.max_steps={STEPS}", "stages.pretrain.trainer.global_batch_size=8",
            "stages.pretrain.trainer.micro_batch_size=2", f"stages.pretrain.trainer.save_every={SAVE_EVERY}", "stages.pretrain.trainer.keep_last=3",
            "stages.pretrain.trainer.schedule=wsd", "stages.pretrain.trainer.warmup_ratio=0.25", "stages.pretrain.trainer.stable_ratio=0.5"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_tokenizer_dir):
    base = tmp_path_factory.mktemp("zero3")
    packed = base / "packed"
    one = result_of(run_harness(overrides(base / "one", tiny_tokenizer_dir, packed)))
    two_dir = base / "two"
    killed = run_harness(overrides(two_dir, tiny_tokenizer_dir, packed), ["--kill-at", str(KILL_AT)], ranks=2)
    before = metric_lines(two_dir / "train" / "metrics.jsonl")
    two = result_of(run_harness(overrides(two_dir, tiny_tokenizer_dir, packed),
                                ["--logits-out", str(base / "two_logits.pt"), "--shapes-out",
                                 str(base / "shapes")], ranks=2))
    return {"one": one, "two": two, "killed": killed, "before": before, "base": base}


def test_two_rank_zero3_matches_one_rank_on_same_global_batch(runs):
    one = metrics_by_step(runs["one"]["log_file"])
    two = metrics_by_step(runs["two"]["log_file"])
    assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))
    for s in range(1, STEPS + 1):
        assert two[s]["target_tokens"] == one[s]["target_tokens"], s  # same global batch
        assert two[s]["loss"] == pytest.approx(one[s]["loss"], rel=1e-4, abs=1e-5), s
        assert two[s]["grad_norm"] == pytest.approx(one[s]["grad_norm"], rel=1e-3), s
        assert two[s]["lr"] == pytest.approx(one[s]["lr"], rel=1e-9), s
    assert one[STEPS]["loss"] < one[1]["loss"] - 0.05


def test_two_rank_kill9_resume_repeats_the_same_losses(runs):
    assert runs["killed"].returncode != 0
    before = {r["step"]: r for r in runs["before"]}
    assert max(before) == KILL_AT
    ck = runs["base"] / "two" / "train" / "checkpoints"
    # Sharded ZeRO-3 checkpoint: one model + optimizer partition per rank.
    shards = sorted(p.name for p in (ck / "step-00000004").glob("*optim_states.pt"))
    assert len(shards) == 2, shards
    assert {p.name for p in (ck / "step-00000004").glob("rng-rank*.pt")} == {"rng-rank00000.pt", "rng-rank00001.pt"}
    resumed = metrics_by_step(runs["two"]["log_file"])
    for s in range(SAVE_EVERY + 1, KILL_AT + 1):
        assert resumed[s]["batch_hash"] == before[s]["batch_hash"], s  # sampler continued in place
        assert resumed[s]["loss"] == pytest.approx(before[s]["loss"], rel=1e-12, abs=0), s


def test_zero3_parameters_are_partitioned_across_ranks(runs):
    import json

    for r in (0, 1):
        info = json.loads((runs["base"] / f"shapes.rank{r}").read_text())
        full, part = info["zero3"]["self_attn.q_proj.weight"]
        assert full == [64, 64] and part == 64 * 64 // 2  # each rank holds half of the weight


def test_zero3_export_loads_with_engine_logits(runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jz3.models.attention import document_forward_kwargs

    hf = runs["two"]["hf_export_dir"]
    model = AutoModelForCausalLM.from_pretrained(hf, local_files_only=True).eval()
    assert AutoTokenizer.from_pretrained(hf, local_files_only=True).pad_token_id == 3
    b = probe_batch()
    with torch.no_grad():
        logits = model(input_ids=b["input_ids"], **document_forward_kwargs(b["position_ids"], "sdpa")).logits
    torch.testing.assert_close(logits.float(), torch.load(runs["base"] / "two_logits.pt"), rtol=0, atol=1e-5)
