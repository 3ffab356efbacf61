"""`evaluate(cfg) -> metrics`: every benchmark x setting; predictions JSONL, metrics JSON,
markdown table, optional W&B; resumable (a finished benchmark/setting file is reused)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

from tqdm import tqdm

from jz3.config.enums import EvalSetting
from jz3.config.eval import EvalConfig
from jz3.config.root import JZ3Config
from jz3.data.records import AtomicJsonlWriter, atomic_write_text, count_lines
from jz3.eval.backends import Generator, GenParams, make_generator
from jz3.eval.grading import answers_match, choice_letter, extract_answer, majority_vote
from jz3.eval.loaders import EvalItem, load_benchmark
from jz3.eval.prompting import build_prompt, stop_strings
from jz3.eval.report import Metrics, log_wandb, write_reports
from jz3.eval.sandbox import SandboxPool
from jz3.eval.tool_loop import run_tool_loop
from jz3.pipeline.manifest import config_hash, write_manifest

log = logging.getLogger(__name__)


def predictions_path(out_dir: Path, benchmark: str, setting: EvalSetting) -> Path:
    return out_dir / "predictions" / f"{benchmark}.{EvalSetting(setting).value}.jsonl"


def generation_hash(cfg: EvalConfig) -> str:
    """Identity of what produced a predictions file: a finished file is reused only if it
    matches (a different model, prompt style or sampling redoes it)."""
    keys = ("model_path", "tokenizer_path", "backend", "base_url", "few_shot", "max_new_tokens",
            "temperature", "top_p", "num_samples", "tool_rounds", "seed", "max_prompt_tokens")
    return config_hash({k: getattr(cfg, k) for k in keys}, dataclasses.asdict(cfg.sandbox))


def _params(cfg: EvalConfig) -> GenParams:
    return GenParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                     top_p=cfg.top_p, n=max(1, cfg.num_samples), seed=cfg.seed)


def generate_outputs(gen: Generator, items: List[EvalItem], benchmark: str,
                     setting: EvalSetting, cfg: EvalConfig,
                     pool: Optional[SandboxPool]) -> List[List[str]]:
    """`num_samples` outputs per item, in batches (progress bar per batch)."""
    prompts = [build_prompt(it.question, benchmark, setting, cfg.few_shot) for it in items]
    stops = stop_strings(setting)
    chunk = max(1, cfg.batch_size) * 4
    outs: List[List[str]] = []
    for s in tqdm(range(0, len(prompts), chunk), desc=f"{benchmark}/{setting.value}",
                  unit="batch", leave=False):
        part = prompts[s: s + chunk]
        if setting == EvalSetting.tool:
            assert pool is not None
            traces = run_tool_loop(gen, part, stops, _params(cfg), pool, cfg.tool_rounds)
            outs.extend([[t.completion for t in ts] for ts in traces])
        else:
            outs.extend(gen.generate(part, stops, _params(cfg)))
    return outs


def grade_item(item: EvalItem, outputs: List[str], benchmark: str, setting: EvalSetting) -> Dict:
    """The prediction record; with several samples, `pred` is the majority vote (maj@k)."""
    preds = [extract_answer(o, benchmark) for o in outputs]
    if item.choices:  # a model that writes the option's text instead of its letter
        preds = [p or choice_letter(o, item.choices) for p, o in zip(preds, outputs, strict=True)]
    pred = preds[0] if len(preds) == 1 else majority_vote(preds, benchmark)
    rec = {"benchmark": benchmark, "idx": item.idx, "question": item.question, "gold": item.gold,
           "output": outputs[0] if outputs else "", "pred": pred,
           "correct": bool(pred) and answers_match(pred, item.gold, benchmark),
           "setting": setting.value}
    if len(outputs) > 1:
        rec["samples"] = outputs
        rec["sample_preds"] = preds
    return rec


def _summarise(path: Path) -> Dict[str, float]:
    rows = [json.loads(line) for line in path.open() if line.strip()]
    n = len(rows)
    correct = sum(bool(r["correct"]) for r in rows)
    return {"accuracy": correct / n if n else 0.0, "n": n, "correct": correct,
            "no_answer": sum(not r["pred"] for r in rows)}


def evaluate(cfg: JZ3Config, generator: Optional[Generator] = None) -> Metrics:
    """Run the configured benchmarks and settings; returns benchmark -> setting -> metrics."""
    ecfg = cfg.eval
    out_dir = Path(ecfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    settings = [EvalSetting(s) for s in ecfg.settings]
    gen = generator
    pool = SandboxPool(ecfg.sandbox) if EvalSetting.tool in settings else None
    metrics: Metrics = {}
    ghash = generation_hash(ecfg)
    try:
        for bench in ecfg.benchmarks:
            items = load_benchmark(bench, ecfg.data_dir, ecfg.limit)
            metrics[bench] = {}
            for setting in settings:
                path = predictions_path(out_dir, bench, setting)
                stamp = path.with_name(path.name + ".hash")
                if path.exists() and count_lines(path) == len(items) and stamp.exists() \
                        and stamp.read_text() == ghash:
                    log.info("%s/%s: reusing %s", bench, setting.value, path)
                else:
                    if gen is None:
                        gen = make_generator(ecfg)
                    outs = generate_outputs(gen, items, bench, setting, ecfg, pool)
                    with AtomicJsonlWriter(path) as w:
                        for item, o in zip(items, outs, strict=True):
                            w.write(grade_item(item, o, bench, setting))
                    atomic_write_text(stamp, ghash)
                metrics[bench][setting.value] = _summarise(path)
                log.info("%s/%s: accuracy %.3f over %d", bench, setting.value,
                         metrics[bench][setting.value]["accuracy"], len(items))
    finally:
        if pool is not None:
            pool.close()
    names = [s.value for s in settings]
    files = write_reports(out_dir, metrics, names)
    log_wandb(metrics, ecfg.wandb, ecfg.wandb_project, cfg.exp_name, out_dir,
              config=dataclasses.asdict(ecfg))
    n_pred = sum(int(m["n"]) for per in metrics.values() for m in per.values())
    write_manifest(out_dir, "evaluate", config_hash(dataclasses.asdict(ecfg)),
                   counts={"predictions": n_pred}, wall_s=time.time() - t0,
                   outputs=[str(p.relative_to(out_dir)) for p in files.values()],
                   extra={"metrics": metrics})
    return metrics
