"""The vLLM backend on CPU with the real SmolLM2-135M-Instruct: one engine for the module, built
the way evaluation builds it (`eval.backend=vllm`), checked against the HF backend and against
the sampling parameters it is given.

The engine takes ~1 min to start on 2 cores; every test here shares it."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from jz3.config.enums import EvalSetting, GenBackend
from jz3.config.eval import EvalConfig
from jz3.generation.api import GenParams, GenRequest, complete
from jz3.models.gguf_import import SMOLLM2_DIR, is_imported

QUESTION = "Natalia sold clips to 48 of her friends in April, and then she sold half as many " \
           "clips in May. How many clips did Natalia sell altogether in April and May?"
SNIPPET = ("A sequence is arithmetic when the difference between consecutive terms is constant. "
           "For example 3, 7, 11, 15 has common difference 4.")


def _smol() -> str:
    if not is_imported(SMOLLM2_DIR):
        pytest.fail(f"{SMOLLM2_DIR} is not imported: run `make models`")
    return str(SMOLLM2_DIR)


def _eval_cfg(**kw) -> EvalConfig:
    base = dict(backend=GenBackend.vllm, model_path=_smol(), max_prompt_tokens=1536,
                max_new_tokens=512)
    return EvalConfig(**{**base, **kw})


def _prompts():
    from jz3.prompts.renderer import render

    return [render("grade_school", SNIPPET), f"## Question\n{QUESTION}\n\n## Solution\n",
            render("high_school", SNIPPET), "The three most important ideas in algebra are"]


@pytest.fixture(scope="module")
def engine():
    from jz3.eval.run import backend_spec
    from jz3.generation import make_generator

    t0 = time.perf_counter()
    gen = make_generator(backend_spec(_eval_cfg()))
    print(f"vLLM engine start-up: {time.perf_counter() - t0:.1f}s")
    yield gen
    gen.chat_template = False
    del gen


@pytest.fixture(scope="module")
def hf():
    from jz3.config.enums import Precision
    from jz3.generation.factory import BackendSpec, load_hf

    return load_hf(BackendSpec(GenBackend.hf, _smol(), device="cpu", precision=Precision.fp32,
                               batch_size=4, max_prompt_tokens=1536))


# ----------------------------------------------------------------------------- no engine needed
def test_tensor_parallel_is_refused_before_the_engine_starts():
    """A split the engine cannot run fails in milliseconds with the config key, not after a
    minute of start-up inside vLLM; None (every visible GPU) is 1 on CPU."""
    from jz3.eval.run import backend_spec, tensor_parallel
    from jz3.generation import make_generator

    assert tensor_parallel(_eval_cfg()) == 1
    for tp, msg in ((2, "=2 does not divide the model's 9 attention heads"),
                    (3, "=3: no GPU visible"), (0, "=0: must be >= 1")):
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=f"eval.tensor_parallel_size{msg}"):
            make_generator(backend_spec(_eval_cfg(tensor_parallel_size=tp)))
        assert time.perf_counter() - t0 < 5


# ----------------------------------------------------------------------------- one engine
@pytest.mark.slow
def test_greedy_equals_the_hf_backend_token_for_token(engine, hf):
    """Greedy fp32 (plain and chat-template prompts, with and without a frequency penalty): the
    same text and the same prompt/completion token counts as jz3's HF decode loop."""
    prompts = _prompts()
    for chat, penalty in ((False, 0.0), (True, 0.0), (False, 1.5)):
        engine.chat_template = hf.chat_template = chat
        reqs = [GenRequest(f"p{i}", p, 0.0, 1.0, 24, seed=i, frequency_penalty=penalty)
                for i, p in enumerate(prompts)]
        got, want = engine.generate(reqs), hf.generate(reqs)
        for g, w in zip(got, want, strict=True):
            assert (g.completion, g.prompt_tokens, g.completion_tokens, g.finish_reason) == \
                (w.completion, w.prompt_tokens, w.completion_tokens, w.finish_reason), \
                (chat, penalty, g.id)
    engine.chat_template = hf.chat_template = False
    # the penalty changed something (it is passed through, not dropped)
    plain = engine.generate([GenRequest("a", prompts[3], 0.0, 1.0, 24)])[0].completion
    pen = engine.generate([GenRequest("a", prompts[3], 0.0, 1.0, 24,
                                      frequency_penalty=1.5)])[0].completion
    assert plain != pen


@pytest.mark.slow
def test_sampling_parameters_are_honoured(engine):
    """seed (same text in any batch, different seeds differ), temperature, top_p (a nucleus of
    one token is greedy), max_tokens, stop strings."""
    p = _prompts()
    greedy = engine.generate([GenRequest("g", p[3], 0.0, 1.0, 32)])[0]
    assert greedy.finish_reason == "length" and greedy.completion_tokens == 32
    # top_p -> 0 keeps only the most likely token: greedy whatever the temperature and seed
    nucleus = engine.generate([GenRequest("n", p[3], 1.5, 1e-6, 32, seed=s) for s in (1, 2)])
    assert [r.completion for r in nucleus] == [greedy.completion] * 2
    # seeded sampling: a request's text does not depend on its batch; seeds differ
    alone = engine.generate([GenRequest("s", p[3], 1.0, 0.95, 32, seed=7)])[0]
    batch = engine.generate([GenRequest(f"b{s}", p[3], 1.0, 0.95, 32, seed=s)
                             for s in (3, 7, 11, 13)] + [GenRequest("x", p[0], 1.0, 0.95, 32, 7)])
    assert batch[1].completion == alone.completion
    assert len({r.completion for r in batch[:4]}) == 4
    assert alone.completion != greedy.completion  # temperature 1 samples
    # max_tokens
    short = engine.generate([GenRequest("m", p[3], 1.0, 0.95, 5, seed=7)])[0]
    assert short.completion_tokens == 5 and short.finish_reason == "length"
    assert alone.completion.startswith(short.completion)
    # stop strings: the text ends before the first one (the engine's output is cut there)
    words = greedy.completion.split()
    stop = words[len(words) // 2]
    cut = engine.generate([GenRequest("t", p[3], 0.0, 1.0, 32, stop=(stop, "\u2603"))])[0]
    assert cut.completion == greedy.completion[:greedy.completion.index(stop)]
    assert cut.finish_reason == "stop" and cut.completion_tokens < 32


@pytest.mark.slow
def test_seeded_batch_larger_than_one_prefill_step(engine):
    """Ten ~600-token synthesis prompts, seeded: more prompt tokens than vLLM's default prefill
    budget (4096), which it would split into partial prefills that crash seeded sampling on CPU
    (`CPU Generator does not use offset`); each text is its text when run alone."""
    from jz3.bench.synthesize import _prompts

    reqs = [GenRequest(f"q{i}", p, 1.0, 0.95, 6, seed=i) for i, p in enumerate(_prompts(10))]
    assert sum(len(engine.encode(r.prompt)) for r in reqs) > 4096
    batch = engine.generate(reqs)
    assert all(r.completion_tokens > 0 for r in batch)
    assert [r.completion for r in engine.generate(reqs[7:9])] == \
        [r.completion for r in batch[7:9]]


@pytest.mark.slow
def test_n_completions_per_prompt_each_seeded(engine):
    """`complete(..., n=3)` (evaluation's sampling path): three seeded samples per prompt, the
    same again on a rerun and when the prompt is run among others."""
    p = _prompts()[1:4]
    params = GenParams(max_new_tokens=16, temperature=1.0, top_p=0.95, n=3, seed=5)
    first = complete(engine, p, ["\n\n"], params)
    assert [len(x) for x in first] == [3, 3, 3]
    assert all(len(set(x)) > 1 for x in first)
    assert complete(engine, [p[1]], ["\n\n"], params) == [first[1]]
    assert complete(engine, p, ["\n\n"], replace(params, seed=6)) != first


@pytest.mark.slow
def test_evaluation_through_vllm_equals_the_hf_backend(engine, tmp_path, shared_data):
    """`run_evaluation` on GSM8K (few-shot CoT, the release prompts) with the vLLM engine gives
    the HF backend's predictions and accuracy."""
    from jz3.data.records import read_records
    from jz3.eval.run import predictions_path, run_evaluation

    cfg = _eval_cfg(benchmarks=["gsm8k"], settings=[EvalSetting.cot], limit=3,
                    max_new_tokens=48, data_dir=str(shared_data / "benchmarks"))
    got = run_evaluation(cfg, cfg.model_path, tmp_path / "vllm", generator=engine)
    want = run_evaluation(replace(cfg, backend=GenBackend.hf), cfg.model_path, tmp_path / "hf")
    preds = [list(read_records(predictions_path(tmp_path / b, "gsm8k", EvalSetting.cot)))
             for b in ("vllm", "hf")]
    assert len(preds[0]) == 3
    assert all(r["output"] for r in preds[0])
    assert [r["output"] for r in preds[0]] == [r["output"] for r in preds[1]]
    assert got.metrics == want.metrics


def test_watchdog_kills_the_helpers_of_a_sigkilled_process():
    """What keeps a SIGKILLed synthesis task from leaving its engine core running: the helper
    of a killed parent is killed after the grace period."""
    import os
    import signal
    import subprocess
    import sys

    import psutil

    code = ("import subprocess, sys, time\n"
            "from jz3.generation.reaper import watch\n"
            "watch()\n"
            "time.sleep(1.5)\n"
            "h = subprocess.Popen(['sleep', '300'])\n"
            "time.sleep(3)\n"  # the watchdog polls its parent's new processes every second
            "print(h.pid, flush=True)\n"
            "time.sleep(300)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    helper = int(parent.stdout.readline())
    assert psutil.pid_exists(helper)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while psutil.pid_exists(helper) and psutil.Process(helper).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the helper outlived its killed parent"
        time.sleep(0.2)
