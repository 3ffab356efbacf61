"""The HF generation backend: batched decoding with KV cache + left padding, seeded per record,
stop strings, chat templates; the synth config -> generator path."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from jz3.generation import GenParams, GenRequest, complete, record_seed
from jz3.generation.hf import HFGenerator
from jz3.generation.sampling import sample_next
from tests.synth_fixtures import tiny_synthesizer  # noqa: F401

PROMPTS = ["## Question\nA train travels 60 km in", "Let x be", "Compute the sum of the first "
           "ten odd numbers and explain each step of the computation carefully.", "Solve"]


def _gen(path, batch_size):
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return HFGenerator(model, tok, batch_size=batch_size), model, tok


def _reqs(temperature, max_new=12, seeds=None):
    return [GenRequest(f"r{i}", p, temperature, 0.95, max_new,
                       seed=(seeds or {}).get(i, record_seed(0, f"r{i}")))
            for i, p in enumerate(PROMPTS)]


def test_batched_equals_one_at_a_time_and_reruns_reproduce(tiny_synthesizer):  # noqa: F811
    batched, _, _ = _gen(tiny_synthesizer, 4)
    single, _, _ = _gen(tiny_synthesizer, 1)
    a = batched.generate(_reqs(1.0))
    b = single.generate(_reqs(1.0))
    c = batched.generate(_reqs(1.0))
    assert [r.completion for r in a] == [r.completion for r in b] == [r.completion for r in c]
    assert all(r.completion_tokens == 12 and r.finish_reason == "length" for r in a)
    assert len({r.completion for r in a}) == len(a)  # rows really are sampled independently
    d = batched.generate(_reqs(1.0, seeds={0: 12345}))
    assert d[0].completion != a[0].completion and d[1].completion == a[1].completion


def test_greedy_matches_transformers_generate(tiny_synthesizer):  # noqa: F811
    gen, model, tok = _gen(tiny_synthesizer, 4)
    ours = gen.generate(_reqs(0.0, max_new=10))
    for req, res in zip(_reqs(0.0, max_new=10), ours, strict=True):
        ids = torch.tensor([gen.encode(req.prompt)])
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        want = tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)
        assert res.completion == want, req.prompt


def test_prompt_too_long_is_reported_not_truncated(tiny_synthesizer):  # noqa: F811
    gen, _, _ = _gen(tiny_synthesizer, 2)
    gen.max_prompt_tokens = 8
    res = gen.generate(_reqs(1.0, max_new=3))
    long_ones = [r for r in res if r.error]
    assert long_ones and all(r.error.startswith("prompt_too_long") for r in long_ones)
    assert [r.id for r in res] == [f"r{i}" for i in range(len(PROMPTS))]


def test_sample_next_top_p_and_temperature():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 3))
    u = torch.tensor([[0.0], [0.999], [0.7]], dtype=torch.float64)
    # top_p=0.6 keeps {0, 1}: u=0.999 must not reach token 2 or 3
    tok = sample_next(logits, torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.6, 0.6, 1.0]), u)
    assert tok.tolist()[0] == 0 and tok.tolist()[1] == 1
    assert tok.tolist()[2] == 1  # full distribution: cdf 0.5, 0.8 -> u=0.7 picks token 1
    greedy = sample_next(logits, torch.zeros(3), torch.ones(3), u)
    assert greedy.tolist() == [0, 0, 0]
    # empirical frequencies follow the nucleus-renormalised distribution
    g = torch.Generator().manual_seed(0)
    uu = torch.rand(20000, 1, generator=g, dtype=torch.float64)
    many = sample_next(logits[:1].expand(20000, 4), torch.ones(20000), torch.full((20000,), 0.9),
                       uu)
    freq = torch.bincount(many, minlength=4).float() / 20000
    assert abs(freq[0] - 0.5 / 0.95) < 0.02 and freq[3] == 0


def test_stop_strings_end_rows_early_and_are_cut(tiny_synthesizer):  # noqa: F811
    gen, _, _ = _gen(tiny_synthesizer, 4)
    free = gen.generate(_reqs(1.0, max_new=24))
    # stop at a piece of text each row really produces: its own 3rd..5th characters
    stops = [r.completion[3:5] for r in free]
    reqs = [GenRequest(r.id, r.prompt, r.temperature, r.top_p, r.max_new_tokens, r.seed,
                       stop=(s,)) for r, s in zip(_reqs(1.0, max_new=24), stops, strict=True)]
    cut = gen.generate(reqs)
    for f, c, s in zip(free, cut, stops, strict=True):
        assert c.completion == f.completion[:f.completion.find(s)]
        assert c.finish_reason == "stop" and c.completion_tokens < f.completion_tokens


def test_complete_seeds_each_sample_and_is_batch_independent(tiny_synthesizer):  # noqa: F811
    gen, _, _ = _gen(tiny_synthesizer, 4)
    params = GenParams(max_new_tokens=8, temperature=1.0, top_p=0.95, n=2, seed=3)
    both = complete(gen, PROMPTS[:2], [], params)
    alone = complete(gen, PROMPTS[1:2], [], params)
    assert len(both) == 2 and all(len(x) == 2 for x in both)
    assert both[1] == alone[0] and both[1][0] != both[1][1]


def test_chat_template_renders_one_user_turn(tiny_synthesizer):  # noqa: F811
    _, model, tok = _gen(tiny_synthesizer, 2)
    tok.chat_template = "{% for m in messages %}<user>{{ m['content'] }}</user>{% endfor %}" \
                        "{% if add_generation_prompt %}<bot>{% endif %}"
    gen = HFGenerator(model, tok, batch_size=2, chat_template=True)
    want = tok("<user>Let x be</user><bot>", add_special_tokens=False)["input_ids"]
    assert gen.encode("Let x be") == want
    res = gen.generate(_reqs(0.0, max_new=4)[:1])
    assert res[0].prompt_tokens == len(gen.encode(PROMPTS[0]))


def test_synth_config_builds_the_hf_generator(tiny_synthesizer):  # noqa: F811
    from jz3.config.enums import GenBackend
    from jz3.config.synth import SynthConfig
    from jz3.synth.generator import make_generator

    gen = make_generator(SynthConfig(model_path=str(tiny_synthesizer), batch_size=3))
    assert isinstance(gen, HFGenerator) and gen.batch_size == 3 and not gen.truncate_left
    with pytest.raises(FileNotFoundError, match="synth.model_path"):
        make_generator(SynthConfig(model_path="/nonexistent"))
    with pytest.raises(ValueError, match="synth.backend"):
        make_generator(SynthConfig(model_path="x", backend=GenBackend.openai))


def test_frequency_penalty_matches_a_reference_loop(tiny_synthesizer):  # noqa: F811
    """Greedy with a frequency penalty equals a plain loop (full forward, logit - p * count of
    the token in the completion so far, argmax); rows leave the batch at different steps."""
    gen, model, tok = _gen(tiny_synthesizer, 4)
    reqs = [GenRequest(f"r{i}", p, 0.0, 1.0, n, frequency_penalty=0.7)
            for i, (p, n) in enumerate(zip(PROMPTS, [6, 10, 14, 20], strict=True))]
    ours = gen.generate(reqs)
    plain = gen.generate([GenRequest(r.id, r.prompt, 0.0, 1.0, r.max_new_tokens) for r in reqs])
    assert any(a.completion != b.completion for a, b in zip(ours, plain, strict=True))
    for req, res in zip(reqs, ours, strict=True):
        ids = gen.encode(req.prompt)
        counts = torch.zeros(model.config.vocab_size)
        new = []
        with torch.no_grad():
            for _ in range(req.max_new_tokens):
                logits = model(torch.tensor([ids + new])).logits[0, -1].float()
                t = int((logits - 0.7 * counts).argmax())
                if t == tok.eos_token_id:
                    break
                new.append(t)
                counts[t] += 1
        assert res.completion == tok.decode(new, skip_special_tokens=True), req.prompt


def test_synthesis_stop_strings_reach_the_requests():
    """`synth.stop` for CoT prompts, `synth.tool_stop` for tool prompts (jz3_*: the release's
    "<|endoftext|>" for CoT, none for tool, hydra_configs/synth/vllm.yaml)."""
    from jz3.config import compose
    from jz3.config.synth import SynthConfig
    from jz3.synth.run import make_request

    s = SynthConfig(stop=["<|endoftext|>"], tool_stop=[])
    cot = make_request(s, {"id": "a", "prompt_type": "college"}, "p")
    tool = make_request(s, {"id": "b", "prompt_type": "tool"}, "p")
    assert cot.stop == ("<|endoftext|>",) and tool.stop == ()
    syn = compose(["+exp=jz3_7b"]).stages.synthesize.synth
    assert (syn.stop, syn.tool_stop) == (["<|endoftext|>"], [])
