"""Prompting, the tool loop with the real sandbox, backends, and the runner end to end with a
tiny random Llama on CPU."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import List, Sequence

import pytest

from jz3.config.data import TokenizerConfig
from jz3.config.enums import EvalSetting, TokenizerKind
from jz3.config.eval import SandboxConfig
from jz3.config.model import ModelConfig
from jz3.eval.backends import GenParams, HFGenerator, OpenAIGenerator, cut_at_stop
from jz3.eval.grading import is_correct
from jz3.eval.prompting import build_prompt, exemplars, load_fewshot
from jz3.eval.sandbox import SandboxPool
from jz3.eval.tool_loop import run_tool_loop


def test_zero_shot_prompts_use_jiuzhang_format():
    assert build_prompt("What is 1+1?", "gsm8k", EvalSetting.cot) == \
        "## Question\nWhat is 1+1?\n\n## Solution\n"
    assert build_prompt(" What is 1+1? ", "math-oai", EvalSetting.tool) == \
        "## Question\nWhat is 1+1?\n\n## Code Solution\n"


def test_few_shot_counts_and_exemplars_not_from_test_sets(shared_data):
    assert len(exemplars("gsm8k", EvalSetting.cot)) == 8
    assert len(exemplars("math-oai", EvalSetting.cot)) == 4
    for mc in ("aqua", "sat_math", "mmlu_stem"):
        assert len(exemplars(mc, EvalSetting.cot)) == 5
    p = build_prompt("Q?", "gsm8k", EvalSetting.cot, few_shot=True)
    assert p.count("## Question\n") == 9 and p.endswith("## Question\nQ?\n\n## Solution\n")
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
            out.append([cut_at_stop(text, stops)] * params.n)
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
    assert not t1.executions[0].ok and t2.executions[0].error == "blocked: os.system"
    assert "PermissionError: sandbox: blocked os.system" in t2.completion
    assert t3.executions == [] and is_correct(t3.completion, "7", "math-oai")
    assert len(model.calls) == 2  # first turn, then one continuation for the three with code


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    from jz3.eval.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("model") / "tiny"
    tok = TokenizerConfig(kind=TokenizerKind.sentencepiece, path=str(tiny_tokenizer_dir))
    return build_tiny_model(out, ModelConfig(), tok, seed=0)


def test_hf_backend_left_padding_matches_unbatched(tiny_model_dir):
    gen = HFGenerator(str(tiny_model_dir), batch_size=4, device="cpu")
    short = build_prompt("What is 2+3?", "gsm8k", EvalSetting.cot)
    long = build_prompt("A train leaves at noon at 60 km/h; another at 1 pm at 80 km/h. "
                        "When does the second catch up?", "gsm8k", EvalSetting.cot)
    params = GenParams(max_new_tokens=8)
    alone = gen.generate([short], [], params)[0][0]
    batched = gen.generate([long, short], [], params)
    assert gen.tok.padding_side == "left"
    assert batched[1][0] == alone and len(batched) == 2
    two = gen.generate([short], [], GenParams(max_new_tokens=8, temperature=1.0, n=2, seed=1))
    assert len(two[0]) == 2


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
        outs = gen.generate(["## Question\n2+3?\n\n## Solution\n"] * 3, ["\n## Question"],
                            GenParams(max_new_tokens=16, n=2))
    finally:
        server.shutdown()
    assert len(outs) == 3 and all(len(o) == 2 for o in outs)
    assert outs[0][0] == "We add.\nThe answer is 5."
    req = _CompletionsHandler.requests[-1]
    assert req["max_tokens"] == 16 and req["stop"] == ["\n## Question"] and req["n"] == 2


@pytest.mark.slow
def test_runner_end_to_end_tiny_model(tmp_path, tiny_model_dir):
    """Every shipped benchmark x both settings through the real HF backend and sandbox; then a
    rerun reuses the finished prediction files."""
    from jz3.config import compose
    from jz3.eval.runner import evaluate, predictions_path

    cfg = compose(["+exp=tiny_eval", f"run_dir={tmp_path}", f"eval.model_path={tiny_model_dir}",
                   "eval.limit=2", "eval.max_new_tokens=4", "eval.batch_size=4",
                   "eval.tool_rounds=1"])
    metrics = evaluate(cfg)
    out = Path(cfg.eval.out_dir)
    assert set(metrics) == set(cfg.eval.benchmarks) and len(metrics) == 9
    for bench, per in metrics.items():
        assert set(per) == {"cot", "tool"}
        for setting in per:
            rows = [json.loads(x) for x in predictions_path(out, bench, setting).open()]
            assert len(rows) == 2 and all(r["benchmark"] == bench for r in rows)
            assert set(rows[0]) >= {"benchmark", "idx", "question", "gold", "output", "pred",
                                    "correct"}
            if setting == "cot":
                assert rows[0]["question"] in build_prompt(rows[0]["question"], bench, "cot")
    table = (out / "results.md").read_text()
    assert "| gsm8k |" in table and "| **average** |" in table
    assert json.loads((out / "metrics.json").read_text()) == metrics
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["predictions"] == 36
    mtime = predictions_path(out, "gsm8k", "cot").stat().st_mtime_ns
    assert evaluate(cfg) == metrics
    assert predictions_path(out, "gsm8k", "cot").stat().st_mtime_ns == mtime


def test_majority_vote_record_and_config_preset():
    from jz3.config import compose
    from jz3.eval.loaders import EvalItem
    from jz3.eval.runner import grade_item

    item = EvalItem(idx=3, question="q", gold="12")
    rec = grade_item(item, ["The answer is 11.", "#### 12", "so \\boxed{12}"], "gsm8k",
                     EvalSetting.cot)
    assert rec["pred"] in ("12",) and rec["correct"] and rec["sample_preds"] == ["11", "12", "12"]
    cfg = compose(["+exp=tiny_eval"])
    assert cfg.eval.settings == [EvalSetting.cot, EvalSetting.tool]
    assert cfg.eval.limit == 20 and len(cfg.eval.benchmarks) == 9 and cfg.eval.build_tiny_model
    assert cfg.eval.model_path.endswith("runs/tiny_eval/tiny_model")


def test_wandb_offline_log(tmp_path, monkeypatch):
    from jz3.config.enums import WandbMode
    from jz3.eval.report import log_wandb, markdown_table

    monkeypatch.setenv("WANDB_MODE", "offline")
    metrics = {"gsm8k": {"cot": {"accuracy": 0.5, "n": 2}, "tool": {"accuracy": 1.0, "n": 2}}}
    assert "| gsm8k | 50.0 (n=2) | 100.0 (n=2) |" in markdown_table(metrics, ["cot", "tool"])
    run_dir = log_wandb(metrics, WandbMode.offline, "jz3-test", "t", tmp_path)
    assert run_dir and list(tmp_path.glob("wandb/offline-run-*"))
