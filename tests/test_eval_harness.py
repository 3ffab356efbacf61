"""Prompting and protocol shots, the tool loop with the real sandbox, generation backends, and
the evaluation stage end to end with a tiny random Llama on CPU."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import List, Sequence

import pytest

from jz3.config.data import TokenizerConfig
from jz3.config.enums import EvalSetting, GenBackend, TokenizerKind
from jz3.config.eval import EvalConfig, SandboxConfig, ShotMode
from jz3.config.model import ModelConfig
from jz3.eval.grading import is_correct
from jz3.eval.prompting import COT_STOPS, build_prompt, exemplars, load_fewshot, num_shots
from jz3.eval.sandbox import SandboxPool
from jz3.eval.tool_loop import run_tool_loop
from jz3.generation import BackendSpec, GenParams, complete, cut_at_stop, make_generator
from jz3.generation.openai_compat import OpenAIGenerator


def test_zero_shot_prompts_use_jiuzhang_format():
    assert build_prompt("What is 1+1?", "gsm8k", EvalSetting.cot) == \
        "## Question\nWhat is 1+1?\n\n## Solution\n"
    assert build_prompt(" What is 1+1? ", "math-oai", EvalSetting.tool) == \
        "## Question\nWhat is 1+1?\n\n## Code Solution\n"


def test_tensor_parallel_is_every_visible_gpu_for_vllm_only(monkeypatch):
    """The release splits each evaluated model over every visible GPU (math_eval.py); jz3 does
    the same for vLLM unless eval.tensor_parallel_size says otherwise; hf refuses a split."""
    import jz3.generation.vllm as vllm_mod
    from jz3.eval.run import tensor_parallel

    monkeypatch.setattr(vllm_mod, "visible_gpus", lambda: 4)
    assert tensor_parallel(EvalConfig(backend=GenBackend.vllm)) == 4
    assert tensor_parallel(EvalConfig(backend=GenBackend.vllm, tensor_parallel_size=2)) == 2
    assert tensor_parallel(EvalConfig()) == 1  # hf
    with pytest.raises(ValueError, match="eval.tensor_parallel_size=2 needs eval.backend=vllm"):
        tensor_parallel(EvalConfig(tensor_parallel_size=2))
    monkeypatch.setattr(vllm_mod, "visible_gpus", lambda: 0)
    assert tensor_parallel(EvalConfig(backend=GenBackend.vllm)) == 1
    from jz3.config.validate import check

    with pytest.raises(ValueError, match="tensor_parallel_size"):
        check(EvalConfig(backend=GenBackend.vllm, tensor_parallel_size=0), "eval")


def test_protocol_shots_follow_the_release_scripts():
    """cot_model.sh: 0-shot except AQuA/SAT/MMLU-STEM 5-shot; tool_model.sh: 0-shot;
    base_model.sh: 5-shot CoT (capped by the exemplars shipped: MATH has 4)."""
    for b in ("gsm8k", "math-oai", "svamp", "asdiv", "mawps", "carp_en", "minerva_math"):
        assert num_shots(b, EvalSetting.cot, ShotMode.release) == 0
    for b in ("aqua", "sat_math", "mmlu_stem"):
        assert num_shots(b, EvalSetting.cot, ShotMode.release) == 5
    assert num_shots("gsm-hard", EvalSetting.tool, ShotMode.release) == 0
    assert num_shots("gsm8k", EvalSetting.cot, ShotMode.base) == 5
    assert num_shots("math-oai", EvalSetting.cot, ShotMode.base) == 4
    assert num_shots("gsm8k", EvalSetting.tool, ShotMode.base) == 0
    assert num_shots("aqua", EvalSetting.cot, ShotMode.zero) == 0
    from jz3.eval.run import eval_plan

    plan = eval_plan(EvalConfig())
    assert len(plan) == 12 and plan["aqua"] == {"cot": 4} and plan["gsm-hard"] == {"tool": 0}
    # eval.shot_counts: the release ships 4 AQuA exemplars, so its 5-shot AQuA runs 4
    assert plan["sat_math"] == plan["mmlu_stem"] == {"cot": 5}
    assert eval_plan(EvalConfig(shot_counts={}))["aqua"] == {"cot": 5}
    assert plan["gsm8k"] == {"cot": 0, "tool": 0} and plan["minerva_math"] == {"cot": 0}
    assert eval_plan(EvalConfig(few_shot=True, settings=[EvalSetting.cot]))["gsm8k"] == {"cot": 5}


def test_few_shot_counts_and_exemplars_not_from_test_sets(shared_data):
    assert len(exemplars("gsm8k", EvalSetting.cot)) == 8
    assert len(exemplars("math-oai", EvalSetting.cot)) == 4
    for mc in ("aqua", "sat_math", "mmlu_stem"):
        assert len(exemplars(mc, EvalSetting.cot)) == 5
    p = build_prompt("Q?", "gsm8k", EvalSetting.cot, shots=8)
    assert p.count("## Question\n") == 9 and p.endswith("\n\n\n## Question\nQ?\n\n## Solution\n")
    assert build_prompt("Q?", "aqua", EvalSetting.cot, shots=5).count("Answer Choices") == 5
    test_questions = set()
    for f in (shared_data / "benchmarks").glob("*/test.jsonl"):
        for line in f.open():
            r = json.loads(line)
            q = r.get("question") or r.get("problem") or r.get("content") or r.get("input") or ""
            test_questions.add(q.strip())
    for name in ("gsm8k", "math", "multiple_choice", "carp_en", "tool"):
        for ex in load_fewshot(name):
            assert ex["question"].split("\nAnswer Choices")[0].strip() not in test_questions
            assert ex["source"]


class ScriptedModel:
    """Stands in for the model's text only; the loop and the sandbox under it are real."""

    def __init__(self, first: List[str]):
        self.first = first
        self.calls: List[List[str]] = []

    def generate(self, prompts: Sequence[str], stops: Sequence[str],
                 params: GenParams) -> List[List[str]]:
        self.calls.append(list(prompts))
        out = []
        for i, p in enumerate(prompts):
            if "```output" not in p:
                text = self.first[i % len(self.first)]
            else:
                last = p.rsplit("```output\n", 1)[1].split("\n```", 1)[0].strip().splitlines()
                text = f"The result is $\\boxed{{{last[-1] if last else ''}}}$."
            out.append([cut_at_stop(text, stops)[0]] * params.n)
        return out


def test_tool_loop_runs_code_in_sandbox_and_survives_bad_code():
    codes = ["```python\nprint(sum(range(1, 11)))\n```\n",
             "```python\nwhile True:\n    pass\n```\n",
             "```python\nimport os\nos.system('echo hi')\n```\n",
             "No code, just text: \\boxed{7}"]
    model = ScriptedModel(codes)
    with SandboxPool(SandboxConfig(wall_time_s=3.0, cpu_time_s=1, workers=2)) as pool:
        traces = run_tool_loop(model, ["p0", "p1", "p2", "p3"], ["```output"], GenParams(n=1),
                               pool, rounds=4)
    t0, t1, t2, t3 = (ts[0] for ts in traces)
    assert t0.executions[0].stdout.strip() == "55"
    assert "```output\n55\n```" in t0.completion and is_correct(t0.completion, "55", "gsm8k")
    err = t2.executions[0].error or ""
    assert not t1.executions[0].ok and "blocked" in err and "os.system" in err
    assert "PermissionError: sandbox: blocked os.system" in t2.completion
    assert t3.executions == [] and is_correct(t3.completion, "7", "math-oai")
    assert len(model.calls) == 2  # first turn, then one continuation for the three with code


class CodeWriter:
    """Stands in for a CoT model's text: prompt "loop" always ends with code to run; "once"
    writes code, then boxes what the output printed; "plain" boxes at once."""

    def __init__(self):
        self.calls = 0

    def generate(self, prompts: Sequence[str], stops: Sequence[str],
                 params: GenParams) -> List[List[str]]:
        self.calls += 1
        out = []
        for p in prompts:
            if p.startswith("plain"):
                text = "So it is $\\boxed{3}$.  "
            elif p.startswith("once") and "```output" in p:
                last = p.rsplit("```output\n", 1)[1].split("\n```", 1)[0].strip()
                text = f"Hence $\\boxed{{{last}}}$."
            else:
                text = "Let me compute.\n```python\nprint(6 * 7)\n```\n"
            out.append([text] * params.n)
        return out


def test_cot_exec_loop_runs_the_code_an_answer_ends_with():
    """`eval.cot_exec_calls` (the release's `jiuzhang` CoT, max_func_call 4): an answer ending in
    a code block without `boxed` gets the code's output and continues; at most 4 generations."""
    from jz3.eval.tool_loop import LIMIT_NOTE, run_cot_exec_loop

    model = CodeWriter()
    with SandboxPool(SandboxConfig(wall_time_s=3.0, cpu_time_s=1, workers=2)) as pool:
        traces = run_cot_exec_loop(model, ["once", "loop", "plain"], COT_STOPS, GenParams(n=1),
                                   pool, calls=4)
    once, loop, plain = (ts[0] for ts in traces)
    assert len(once.executions) == 1 and "```output\n42\n```" in once.completion
    assert once.completion.endswith("$\\boxed{42}$.") and is_correct(once.completion, "42", "gsm8k")
    assert len(loop.executions) == 4 and loop.completion.endswith(LIMIT_NOTE)
    assert plain.executions == [] and plain.completion == "So it is $\\boxed{3}$."
    assert model.calls == 4  # the first generation + 3 continuations


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    from jz3.generation.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("model") / "tiny"
    tok = TokenizerConfig(kind=TokenizerKind.sentencepiece, path=str(tiny_tokenizer_dir))
    return build_tiny_model(out, tok, ModelConfig(), seed=0)


def test_hf_backend_batched_matches_unbatched(tiny_model_dir):
    gen = make_generator(BackendSpec(GenBackend.hf, str(tiny_model_dir), batch_size=4,
                                     device="cpu", truncate_left=True))
    short = build_prompt("What is 2+3?", "gsm8k", EvalSetting.cot)
    long = build_prompt("A train leaves at noon at 60 km/h; another at 1 pm at 80 km/h. "
                        "When does the second catch up?", "gsm8k", EvalSetting.cot)
    params = GenParams(max_new_tokens=8)
    alone = complete(gen, [short], [], params)[0][0]
    batched = complete(gen, [long, short], [], params)
    assert batched[1][0] == alone and len(batched) == 2
    two = complete(gen, [short], [], GenParams(max_new_tokens=8, temperature=1.0, n=2, seed=1))
    assert len(two[0]) == 2
    # evaluation keeps the tail of an over-long prompt (few-shot exemplars go first)
    gen.max_prompt_tokens = 6
    assert len(complete(gen, [long], [], params)[0][0]) > 0


class _CompletionsHandler(BaseHTTPRequestHandler):
    requests: List[dict] = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        n = body.get("n", 1)
        text = "We add.\nThe answer is 5.\n## Question\nnext"
        resp = {"id": "cmpl-1", "object": "text_completion", "created": 0,
                "model": body["model"],
                "choices": [{"text": text, "index": i, "finish_reason": "stop", "logprobs": None}
                            for i in range(n)],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}
        data = json.dumps(resp).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet
        pass


def test_openai_compatible_backend_over_http():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CompletionsHandler)
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    try:
        gen = OpenAIGenerator("tiny", f"http://127.0.0.1:{server.server_port}/v1", concurrency=2)
        outs = complete(gen, ["## Question\n2+3?\n\n## Solution\n"] * 3, ["\n## Question"],
                        GenParams(max_new_tokens=16, n=2))
    finally:
        server.shutdown()
    assert len(outs) == 3 and all(len(o) == 2 for o in outs)
    assert outs[0][0] == "We add.\nThe answer is 5."
    req = _CompletionsHandler.requests[-1]
    assert req["max_tokens"] == 16 and req["stop"] == ["\n## Question"] and req["n"] == 1
    assert len(_CompletionsHandler.requests) >= 6  # one seeded request per sample


def _eval_cfg(shared_data, **kw) -> EvalConfig:
    base = dict(data_dir=str(shared_data / "benchmarks"), limit=2, max_new_tokens=4,
                batch_size=4, tool_rounds=1, max_prompt_tokens=512,
                sandbox=SandboxConfig(wall_time_s=10.0, workers=2))
    base.update(kw)
    return EvalConfig(**base)


@pytest.mark.slow
def test_run_evaluation_end_to_end_tiny_model(tmp_path, tiny_model_dir, shared_data):
    """Every registered benchmark in the settings the release uses, through the real HF backend
    and sandbox; TabMWP (no file) is reported unavailable; a rerun reuses the predictions."""
    from jz3.eval.run import EvalResult, predictions_path, run_evaluation

    cfg = _eval_cfg(shared_data)
    out = tmp_path / "eval"
    res = run_evaluation(cfg, tiny_model_dir, out)
    assert isinstance(res, EvalResult) and res.out_dir == out
    assert set(res.metrics) == set(cfg.benchmarks) and len(res.metrics) == 12
    assert res.unavailable.keys() == {"tabmwp"}
    assert res.metrics["tabmwp"]["cot"]["status"] == "unavailable"
    assert set(res.metrics["aqua"]) == {"cot"} and set(res.metrics["gsm-hard"]) == {"tool"}
    assert set(res.metrics["gsm8k"]) == {"cot", "tool"}
    assert res.metrics["aqua"]["cot"]["shots"] == 4 and res.metrics["gsm8k"]["cot"]["shots"] == 0
    assert res.counts["predictions"] == 32 == res.counts["generated"]
    assert len(res.predictions) == 16 and all(p.exists() for p in res.predictions)
    for bench, per in res.metrics.items():
        for setting, m in per.items():
            if bench == "tabmwp":
                continue
            rows = [json.loads(x) for x in predictions_path(out, bench, setting).open()]
            assert len(rows) == 2 == m["n"] and all(r["benchmark"] == bench for r in rows)
            assert set(rows[0]) >= {"benchmark", "idx", "question", "gold", "output", "pred",
                                    "correct"}
    gold = [json.loads(x)["gold"] for x in predictions_path(out, "minerva_math", "cot").open()]
    assert gold[0] == "1.6"  # the \\boxed{} answer of its solution
    table = res.table_path.read_text()
    assert "| gsm8k |" in table and "| **average** |" in table and "unavailable" in table
    assert "5-shot" in table
    assert json.loads(res.metrics_path.read_text()) == res.metrics
    assert not (out / "manifest.json").exists()  # provenance is the pipeline runner's
    mtime = predictions_path(out, "gsm8k", "cot").stat().st_mtime_ns
    again = run_evaluation(cfg, tiny_model_dir, out)
    assert again.metrics == res.metrics and again.counts["reused"] == 32
    assert predictions_path(out, "gsm8k", "cot").stat().st_mtime_ns == mtime


def test_empty_and_malformed_benchmark_files_are_errors(tmp_path, tiny_model_dir, shared_data):
    from jz3.benchmarks import BenchmarkFormatError, load_benchmark
    from jz3.eval.run import EmptyBenchmark, run_evaluation

    data = tmp_path / "data"
    (data / "gsm8k").mkdir(parents=True)
    f = data / "gsm8k" / "test.jsonl"
    f.write_text("\n")
    cfg = _eval_cfg(shared_data, data_dir=str(data), benchmarks=["gsm8k"], settings=["cot"])
    with pytest.raises(EmptyBenchmark, match=str(f)):
        run_evaluation(cfg, tiny_model_dir, tmp_path / "out")
    good = (shared_data / "benchmarks" / "gsm8k" / "test.jsonl").open().readline()
    f.write_bytes(good.encode() + b'{"question": "caf\xe9", "answer": "#### 1", "idx": 1}\n')
    with pytest.raises(BenchmarkFormatError, match=f"{f}:2: invalid UTF-8"):
        load_benchmark("gsm8k", data)
    f.write_text(good + good + "{not json\n")
    with pytest.raises(BenchmarkFormatError, match=f"{f}:3: invalid JSON"):
        load_benchmark("gsm8k", data)
    f.write_text(good + '{"question": "q", "idx": 1}\n')
    with pytest.raises(BenchmarkFormatError, match=f"{f}:2: field 'answer'"):
        load_benchmark("gsm8k", data)
    with pytest.raises(ValueError, match="eval.benchmarks: unknown benchmark 'gsm9k'"):
        run_evaluation(_eval_cfg(shared_data, benchmarks=["gsm9k"]), tiny_model_dir, tmp_path)


def test_majority_vote_record():
    from jz3.benchmarks import EvalItem
    from jz3.eval.run import grade_item

    item = EvalItem(idx=3, question="q", gold="12")
    rec = grade_item(item, ["The answer is 11.", "#### 12", "so \\boxed{12}"], "gsm8k",
                     EvalSetting.cot)
    assert rec["pred"] in ("12",) and rec["correct"] and rec["sample_preds"] == ["11", "12", "12"]


def test_wandb_offline_log(tmp_path, monkeypatch):
    from jz3.config.enums import WandbMode
    from jz3.eval.report import log_wandb, markdown_table

    monkeypatch.setenv("WANDB_MODE", "offline")
    metrics = {"gsm8k": {"cot": {"accuracy": 0.5, "n": 2}, "tool": {"accuracy": 1.0, "n": 2}}}
    assert "| gsm8k | 50.0 (n=2) | 100.0 (n=2) |" in markdown_table(metrics, ["cot", "tool"])
    metrics["tabmwp"] = {"cot": {"status": "unavailable", "reason": "no file"}}
    table = markdown_table(metrics, ["cot", "tool"])
    assert "| tabmwp | unavailable | – |" in table and "| **average** | 50.0 | 100.0 |" in table
    run_dir = log_wandb(metrics, WandbMode.offline, "jz3-test", "t", tmp_path)
    assert run_dir and list(tmp_path.glob("wandb/offline-run-*"))
