"""The per-token loss on real benchmark reference solutions (jz3.eval.loss; the ablation's
yardstick), with the references from the benchmark registry."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from jz3.benchmarks import reference_pairs
from jz3.eval.loss import QUESTION, evaluate_losses, solution_loss


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_tokenizer):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                      bos_token_id=tiny_tokenizer.bos_token_id,
                      eos_token_id=tiny_tokenizer.eos_token_id,
                      pad_token_id=tiny_tokenizer.pad_token_id)
    model = LlamaForCausalLM(cfg)
    d = tmp_path_factory.mktemp("export")
    model.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d, model


def test_reference_pairs(shared_data):
    g = reference_pairs("gsm8k", shared_data / "benchmarks", limit=5)
    m = reference_pairs("math-oai", shared_data / "benchmarks", limit=5)
    mi = reference_pairs("minerva_math", shared_data / "benchmarks", limit=5)
    assert len(g) == len(m) == len(mi) == 5
    assert all("<<" not in s and "####" in s for _, s in g)
    assert all("\\boxed" in s for _, s in m + mi)
    assert g[0][0].startswith("Janet")
    with pytest.raises(ValueError, match="svamp"):
        reference_pairs("svamp", shared_data / "benchmarks")
    with pytest.raises(ValueError, match="gsm-hard.*code"):
        reference_pairs("gsm-hard", shared_data / "benchmarks")


def _manual_loss(model, tok, q, s):
    p = [tok.bos_token_id] + tok(QUESTION.format(q=q), add_special_tokens=False)["input_ids"]
    sol = tok(s, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p + sol])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    lp = torch.log_softmax(logits[:-1].float(), -1)
    tgt = ids[0, 1:]
    nll = -lp[torch.arange(len(tgt)), tgt][len(p) - 1:]
    return float(nll.sum()), len(sol)


def test_batched_loss_equals_per_example_sum(tiny_export, tiny_tokenizer, shared_data):
    _, model = tiny_export
    pairs = reference_pairs("gsm8k", shared_data / "benchmarks", limit=6)
    got = solution_loss(model, tiny_tokenizer, pairs, max_len=4096, batch_size=4)
    tot = [_manual_loss(model, tiny_tokenizer, q, s) for q, s in pairs]
    want = sum(t[0] for t in tot) / sum(t[1] for t in tot)
    assert got.tokens == sum(t[1] for t in tot) and got.items == 6
    assert got.loss_per_token == pytest.approx(want, rel=1e-4)
    # an untrained model is near-uniform over the vocabulary
    assert abs(got.loss_per_token - math.log(len(tiny_tokenizer))) < 1.0


def test_evaluate_losses_from_an_export(tiny_export, shared_data):
    d, _ = tiny_export
    res = evaluate_losses(d, shared_data / "benchmarks", ["gsm8k", "math-oai"], limit=3,
                          max_len=256)
    assert set(res) == {"gsm8k", "math-oai"}
    assert all(r["items"] == 3 and r["tokens"] > 0 and r["loss_per_token"] > 0
               for r in res.values())


def test_unknown_benchmark(tiny_export, shared_data):
    with pytest.raises(ValueError, match="loss_eval.benchmarks: unknown benchmark 'gsm9k'"):
        evaluate_losses(tiny_export[0], shared_data / "benchmarks", ["gsm9k"])
