"""The evaluation stage: `run_evaluation(cfg, model_path, out_dir) -> EvalResult`.

Every configured benchmark x setting that the release evaluates (jz3.benchmarks registry), with
its protocol's shots: predictions JSONL, `metrics.json`, `results.md`, optional W&B. Resumable: a
finished predictions file whose generation stamp matches is reused. Provenance (manifests, cache
keys) belongs to the pipeline runner, not here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

from tqdm import tqdm

from jz3.benchmarks import EvalItem, find_file, load_benchmark, parse_benchmark, spec
from jz3.config.enums import EvalSetting, GenBackend, Precision
from jz3.config.eval import EvalConfig, GradingMode, ShotMode
from jz3.config.validate import check
from jz3.data.records import AtomicJsonlWriter, atomic_write_text, count_lines, read_records
from jz3.eval.grading import answers_match, choice_letter, extract_answer, majority_vote
from jz3.eval.prompting import build_prompt, num_shots, stop_strings
from jz3.eval.report import UNAVAILABLE, Metrics, log_wandb, write_reports
from jz3.eval.sandbox import SandboxPool
from jz3.eval.tool_loop import run_cot_exec_loop, run_tool_loop
from jz3.generation import BackendSpec, Generator, GenParams, TextAdapter, complete, make_generator

log = logging.getLogger(__name__)
_DTYPES = {"auto": None, "bf16": Precision.bf16, "bfloat16": Precision.bf16,
           "fp16": Precision.fp16, "float16": Precision.fp16, "fp32": Precision.fp32,
           "float32": Precision.fp32}


class EmptyBenchmark(ValueError):
    """A benchmark file yielded no items (never reported as accuracy 0)."""


@dataclass
class EvalResult:
    """What `run_evaluation` wrote and measured.

    `metrics`: benchmark -> setting -> {accuracy, n, correct, no_answer, shots} (or
    {status: unavailable, reason} for an optional benchmark whose file is absent)."""

    out_dir: Path
    metrics_path: Path
    table_path: Path
    predictions: List[Path]
    metrics: Metrics
    unavailable: Dict[str, str] = field(default_factory=dict)  # benchmark -> reason
    counts: Dict[str, int] = field(default_factory=dict)  # predictions, generated, reused, ...
    wandb_dir: Optional[str] = None


def predictions_path(out_dir: Path, benchmark: str, setting: EvalSetting) -> Path:
    return Path(out_dir) / "predictions" / f"{benchmark}.{EvalSetting(setting).value}.jsonl"


def generation_hash(cfg: EvalConfig, shots: int) -> str:
    """Identity of what produced a predictions file: a finished file is reused only if it
    matches (a different model, prompt, shots or sampling redoes it)."""
    keys = ("model_path", "tokenizer_path", "backend", "base_url", "max_new_tokens",
            "temperature", "top_p", "num_samples", "tool_rounds", "cot_exec_calls", "seed",
            "max_prompt_tokens",
            "chat_template")
    blob = {k: getattr(cfg, k) for k in keys}
    blob.update(shots=shots, sandbox=dataclasses.asdict(cfg.sandbox))
    if GradingMode(cfg.grading) != GradingMode.strict:  # strict runs keep their earlier hashes
        blob["grading"] = GradingMode(cfg.grading).value
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tensor_parallel(cfg: EvalConfig) -> int:
    """`eval.tensor_parallel_size`, None resolved to every visible GPU (vLLM only)."""
    tp = cfg.tensor_parallel_size
    if cfg.backend != GenBackend.vllm:
        if tp not in (None, 1):
            raise ValueError(f"eval.tensor_parallel_size={tp} needs eval.backend=vllm (the "
                             f"{GenBackend(cfg.backend).value} backend does not split a model)")
        return 1
    if tp is None:
        from jz3.generation.vllm import visible_gpus

        tp = max(1, visible_gpus())
        log.info("eval.tensor_parallel_size: every visible GPU (%d)", tp)
    return tp


def backend_spec(cfg: EvalConfig) -> BackendSpec:
    if cfg.dtype not in _DTYPES:
        raise ValueError(f"eval.dtype: {cfg.dtype!r} is not one of {sorted(_DTYPES)}")
    return BackendSpec(backend=cfg.backend, model_path=cfg.model_path,
                       tokenizer_path=cfg.tokenizer_path, device=cfg.device,
                       precision=_DTYPES[cfg.dtype], batch_size=cfg.batch_size,
                       max_prompt_tokens=cfg.max_prompt_tokens,
                       max_new_tokens=cfg.max_new_tokens, truncate_left=True,
                       chat_template=cfg.chat_template, seed=cfg.seed, base_url=cfg.base_url,
                       api_key_env=cfg.api_key_env, concurrency=cfg.request_concurrency,
                       tensor_parallel_size=tensor_parallel(cfg), config_key="eval")


def _params(cfg: EvalConfig) -> GenParams:
    return GenParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                     top_p=cfg.top_p, n=max(1, cfg.num_samples), seed=cfg.seed)


def generate_outputs(gen: Generator, items: List[EvalItem], benchmark: str,
                     setting: EvalSetting, cfg: EvalConfig, shots: int,
                     pool: Optional[SandboxPool]) -> List[List[str]]:
    """`num_samples` outputs per item, in chunks (progress bar per chunk)."""
    prompts = [build_prompt(it.question, benchmark, setting, shots) for it in items]
    stops = stop_strings(setting)
    chunk = max(1, cfg.batch_size) * 4
    outs: List[List[str]] = []
    for s in tqdm(range(0, len(prompts), chunk), desc=f"{benchmark}/{setting.value}",
                  unit="batch", leave=False):
        part = prompts[s: s + chunk]
        if setting == EvalSetting.tool:
            assert pool is not None
            traces = run_tool_loop(TextAdapter(gen), part, stops, _params(cfg), pool,
                                   cfg.tool_rounds)
            outs.extend([[t.completion for t in ts] for ts in traces])
        elif cfg.cot_exec_calls > 0:
            assert pool is not None
            traces = run_cot_exec_loop(TextAdapter(gen), part, stops, _params(cfg), pool,
                                       cfg.cot_exec_calls)
            outs.extend([[t.completion for t in ts] for ts in traces])
        else:
            outs.extend(complete(gen, part, stops, _params(cfg)))
    return outs


def grade_item(item: EvalItem, outputs: List[str], benchmark: str, setting: EvalSetting,
               mode: GradingMode = GradingMode.strict) -> Dict:
    """The prediction record; with several samples, `pred` is the majority vote (maj@k)."""
    preds = [extract_answer(o, benchmark, mode) for o in outputs]
    if item.choices:  # a model that writes the option's text instead of its letter
        preds = [p or choice_letter(o, item.choices) for p, o in zip(preds, outputs, strict=True)]
    pred = preds[0] if len(preds) == 1 else majority_vote(preds, benchmark, mode)
    rec = {"benchmark": benchmark, "idx": item.idx, "question": item.question, "gold": item.gold,
           "output": outputs[0] if outputs else "", "pred": pred,
           "correct": bool(pred) and answers_match(pred, item.gold, benchmark, mode),
           "setting": EvalSetting(setting).value}
    if len(outputs) > 1:
        rec["samples"] = outputs
        rec["sample_preds"] = preds
    return rec


def _summarise(path: Path, shots: int) -> Dict[str, float]:
    rows = list(read_records(path))
    n = len(rows)
    if n == 0:
        raise EmptyBenchmark(f"{path}: no predictions (empty file)")
    correct = sum(bool(r["correct"]) for r in rows)
    return {"accuracy": correct / n, "n": n, "correct": correct,
            "no_answer": sum(not r["pred"] for r in rows), "shots": shots}


def eval_plan(cfg: EvalConfig) -> Dict[str, Dict[str, int]]:
    """benchmark -> setting -> shots: what `run_evaluation` will run (the settings of
    `cfg.settings` the release evaluates each benchmark in; shots of the `cfg.shots` protocol).
    Unknown benchmark names raise, naming `eval.benchmarks`."""
    mode = ShotMode.base if cfg.few_shot else ShotMode(cfg.shots)
    settings = [EvalSetting(s) for s in cfg.settings]
    plan: Dict[str, Dict[str, int]] = {}
    for name in cfg.benchmarks:
        b = parse_benchmark(name, "eval.benchmarks").value
        plan[b] = {s.value: num_shots(b, s, mode, cfg.shot_counts) for s in settings
                   if s in spec(b).settings}
    return plan


def run_evaluation(cfg: EvalConfig, model_path: Union[str, Path, None], out_dir: Path,
                   generator: Optional[Generator] = None, run_name: str = "eval") -> EvalResult:
    """Evaluate `model_path` (default `cfg.model_path`) on `cfg.benchmarks`; writes under
    `out_dir`: `predictions/<bench>.<setting>.jsonl` (+ `.hash` stamps), `metrics.json`,
    `results.md`."""
    check(cfg, "eval")
    if not cfg.benchmarks or not cfg.settings:
        raise ValueError("eval.benchmarks and eval.settings must be non-empty, got "
                         f"{list(cfg.benchmarks)} x {list(cfg.settings)}")
    if model_path is not None:
        cfg = dataclasses.replace(cfg, model_path=str(model_path))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = [EvalSetting(s) for s in cfg.settings]
    shots_plan = eval_plan(cfg)
    plan = {b: [EvalSetting(s) for s in per] for b, per in shots_plan.items()}
    for b, ss in plan.items():
        skipped = [s.value for s in settings if s not in ss]
        if skipped:
            log.info("%s: not evaluated in %s (the release does not)", b, skipped)
    gen = generator
    pool = SandboxPool(cfg.sandbox) if cfg.cot_exec_calls > 0 \
        or any(EvalSetting.tool in ss for ss in plan.values()) \
        else None
    metrics: Metrics = {}
    unavailable: Dict[str, str] = {}
    written: List[Path] = []
    counts = {"predictions": 0, "generated": 0, "reused": 0}
    try:
        for bench, bench_settings in plan.items():
            if not bench_settings:
                continue
            metrics[bench] = {}
            path = find_file(cfg.data_dir, bench)
            if path is None and spec(bench).optional:
                reason = f"no test file under {Path(cfg.data_dir) / bench}"
                log.warning("%s: unavailable (%s)", bench, reason)
                unavailable[bench] = reason
                for setting in bench_settings:
                    metrics[bench][setting.value] = {"status": UNAVAILABLE, "reason": reason}
                continue
            items = load_benchmark(bench, cfg.data_dir, cfg.limit, path=path)
            if not items:
                raise EmptyBenchmark(f"benchmark {bench}: no items in {path}"
                                     + (f" (eval.limit={cfg.limit})" if cfg.limit is not None
                                        else ""))
            for setting in bench_settings:
                shots = shots_plan[bench][setting.value]
                ghash = generation_hash(cfg, shots)
                pred = predictions_path(out_dir, bench, setting)
                stamp = pred.with_name(pred.name + ".hash")
                if pred.exists() and count_lines(pred) == len(items) and stamp.exists() \
                        and stamp.read_text() == ghash:
                    log.info("%s/%s: reusing %s", bench, setting.value, pred)
                    counts["reused"] += len(items)
                else:
                    if gen is None:
                        gen = make_generator(backend_spec(cfg))
                    outs = generate_outputs(gen, items, bench, setting, cfg, shots, pool)
                    with AtomicJsonlWriter(pred) as w:
                        for item, o in zip(items, outs, strict=True):
                            w.write(grade_item(item, o, bench, setting, cfg.grading))
                    atomic_write_text(stamp, ghash)
                    counts["generated"] += len(items)
                written.append(pred)
                m = _summarise(pred, shots)
                metrics[bench][setting.value] = m
                counts["predictions"] += int(m["n"])
                log.info("%s/%s (%d-shot): accuracy %.3f over %d", bench, setting.value, shots,
                         m["accuracy"], m["n"])
    finally:
        if pool is not None:
            pool.close()
    files = write_reports(out_dir, metrics, [s.value for s in settings])
    wandb_dir = log_wandb(metrics, cfg.wandb, cfg.wandb_project, run_name, out_dir,
                          config=dataclasses.asdict(cfg))
    counts["benchmarks"] = len(metrics)
    counts["unavailable"] = len(unavailable)
    return EvalResult(out_dir=out_dir, metrics_path=files["metrics"], table_path=files["table"],
                      predictions=written, metrics=metrics, unavailable=unavailable,
                      counts=counts, wandb_dir=wandb_dir)

