"""Batched per-example LoRA gradients, the Adam preconditioner and the two projection paths."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from jz3.config.enums import ProjStructure  # noqa: E402
from jz3.influence.examples import per_example_loss  # noqa: E402
from jz3.influence.features import FeatureExtractor  # noqa: E402
from jz3.influence.grads import (  # noqa: E402
    GradCapture,
    backward_batch,
    flatten_grads,
    per_example_grads,
)
from jz3.influence.lora import lora_linears  # noqa: E402
from jz3.influence.precondition import AdamMoments, adam_feature, precondition  # noqa: E402
from jz3.influence.projection import ProjectionPlan  # noqa: E402
from tests.test_influence_helpers import encoder, real_examples, tiny_lora_model  # noqa: E402


@pytest.fixture(scope="module")
def setup(tiny_tokenizer):
    model = tiny_lora_model()
    return model, encoder(tiny_tokenizer), real_examples(6)


def test_batched_grads_equal_per_example_backward(setup):
    """Tolerance: max |batched - single| <= 1e-4 * max |g| (float32, padded vs unpadded)."""
    model, enc, exs = setup
    cap = GradCapture(lora_linears(model))
    losses = backward_batch(model, enc.collate(exs), cap)
    batched = flatten_grads(per_example_grads(cap))
    cap.remove()
    params = [m.weight for m in lora_linears(model).values()]
    assert batched.shape == (len(exs), sum(p.numel() for p in params))
    for i, ex in enumerate(exs):
        b = enc.collate([ex])
        loss = per_example_loss(model(input_ids=b.input_ids, attention_mask=b.attention_mask)
                                .logits, b)[0]
        single = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
        assert single.abs().max() > 0
        assert (batched[i] - single).abs().max() <= 1e-4 * single.abs().max()
        assert abs(float(losses[i]) - float(loss)) <= 1e-5 * abs(float(loss))


def test_factored_equals_two_sided(setup):
    model, enc, exs = setup
    cap = GradCapture(lora_linears(model))
    backward_batch(model, enc.collate(exs), cap)
    for dim in (37, 300, 5000):  # two random sides, one exact side, all exact
        plan = ProjectionPlan(cap.shapes(), dim, seed=3)
        a = plan.factored(cap.acts, cap.out_grads)
        b = plan.two_sided(per_example_grads(cap))
        assert a.shape == (len(exs), dim)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))
    cap.remove()


def test_adam_feature_is_the_less_formula():
    g = torch.randn(3, 4, 5)
    m, v = torch.randn(4, 5), torch.rand(4, 5)
    f = adam_feature(g, m, v, 0.9, 0.999, 1e-8)
    for n in range(3):
        m1 = 0.9 * m + 0.1 * g[n]
        v1 = 0.999 * v + 0.001 * g[n] ** 2
        torch.testing.assert_close(f[n], m1 / torch.sqrt(v1 + 1e-8))
    with pytest.raises(KeyError, match="layer 'b'"):
        precondition({"b": g}, AdamMoments({"a": m}, {"a": v}))


@pytest.mark.parametrize("structure", list(ProjStructure))
def test_features_same_for_any_batch_size(setup, structure):
    model, enc, exs = setup
    ext = FeatureExtractor(model, enc, dim=96, seed=1, kind="rademacher", structure=structure,
                           energy_alloc=True)
    mods = lora_linears(model)
    adam = AdamMoments({n: torch.zeros_like(m.weight) for n, m in mods.items()},
                       {n: torch.rand_like(m.weight) * 1e-6 for n, m in mods.items()})
    ext.use_checkpoint(adam)
    assert ext.plan.structure == structure and ext.factored == (structure == "kronecker")
    for moments in (None, adam):
        whole = ext.batch_features(exs, moments)
        pieces = torch.cat([ext.batch_features(exs[i:i + 2], moments) for i in (0, 2, 4)])
        single = torch.cat([ext.batch_features([e], moments) for e in exs])
        scale = float(whole.abs().max())
        torch.testing.assert_close(pieces, whole, rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(single, whole, rtol=1e-4, atol=1e-5 * scale)
    ext.capture.remove()
