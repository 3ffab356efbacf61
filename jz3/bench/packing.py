"""Packing throughput: jz3 `pack_sources` vs the HF run_clm recipe, same records and tokenizer.

`python -m jz3.bench.packing [--repeat 3] [--seq-len 2048] [--workers 2] [--trials 2]`

Baseline (transformers' examples/pytorch/language-modeling/run_clm.py): `datasets.load_dataset`
("json"), `Dataset.map(tokenize, batched=True)` with the HF tokenizer, then
`Dataset.map(group_texts, batched=True)` into `seq_len` blocks (labels = input_ids). Ours: records
read and validated, tokenized by worker processes (sentencepiece batch encode), input/output loss
mask, memory-mapped shards, then a `MixedPackedDataset` of `seq_len` sequences over them. Both
start from the same JSONL files on disk (the three JiuZhang3.0 sample files, `--repeat` times) and
end with an indexable dataset of fixed-length sequences. The best of `--trials` alternating runs of
each is reported; the last stdout line is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from itertools import chain
from pathlib import Path
from typing import Any, Dict, List

from jz3.data.records import count_lines
from jz3.paths import shared_data_dir

SAMPLE_FILES = ("cot_pretrain_sampled.jsonl", "tool_pretrain_sampled.jsonl",
                "finetune_sampled.jsonl")


def _make_inputs(work: Path, repeat: int, limit: int | None) -> List[Path]:
    """The sample files, each repeated `repeat` times (first `limit` lines when given)."""
    out = []
    for name in SAMPLE_FILES:
        lines = (shared_data_dir() / "jiuzhang3_samples" / name).read_text(encoding="utf-8")
        rows = [x for x in lines.splitlines() if x.strip()][:limit]
        p = work / "inputs" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("\n".join(rows * repeat) + "\n", encoding="utf-8")
        out.append(p)
    return out


def run_baseline(files: List[Path], tok_dir: Path, seq_len: int, cache: Path) -> Dict[str, Any]:
    """run_clm.py: load_dataset('json') -> map(tokenize) -> map(group_texts)."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    raw = load_dataset("json", data_files=[str(f) for f in files], split="train",
                       cache_dir=str(cache))

    def tokenize(batch: Dict[str, List[str]]) -> Dict[str, Any]:
        return tok([i + o for i, o in zip(batch["input"], batch["output"], strict=True)])

    tokenized = raw.map(tokenize, batched=True, remove_columns=raw.column_names,
                        load_from_cache_file=False)

    def group_texts(examples: Dict[str, List[List[int]]]) -> Dict[str, Any]:
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total = (len(concatenated["input_ids"]) // seq_len) * seq_len
        result = {k: [t[i:i + seq_len] for i in range(0, total, seq_len)]
                  for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    grouped = tokenized.map(group_texts, batched=True, load_from_cache_file=False)
    wall = time.perf_counter() - t0
    n_tokens = sum(len(x) for x in tokenized["input_ids"])  # counted after the timed window
    return {"wall_s": wall, "tokens": n_tokens, "sequences": len(grouped)}


def run_ours(files: List[Path], tok_dir: Path, seq_len: int, workers: int,
             out: Path) -> Dict[str, Any]:
    from transformers import AutoTokenizer

    from jz3.config.data import DataConfig, DataSource
    from jz3.data.packed_dataset import MixedPackedDataset
    from jz3.data.packing import pack_sources

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    cfg = DataConfig(sources=[DataSource(f.stem, str(f)) for f in files], num_workers=workers,
                     seq_len=seq_len)
    pack_sources(cfg, tok, out)
    ds = MixedPackedDataset(out, seq_len)
    wall = time.perf_counter() - t0
    n_tokens = sum(s.n_tokens for s in ds.sources)
    t1 = time.perf_counter()
    for s in ds.sources:  # touch every sequence once (not timed as packing)
        for i in range(0, len(s), max(1, len(s) // 50)):
            s[i]
    return {"wall_s": wall, "tokens": n_tokens, "sequences": len(ds),
            "sample_read_s": time.perf_counter() - t1}


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the pack workers)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: List[str] | None = None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="times each sample file is repeated")
    ap.add_argument("--limit", type=int, default=None, help="first N records of each file")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--vocab-size", type=int, default=2048)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # imports outside the timed windows; HF tokenizers keep their default (parallel) setting
    import transformers  # noqa: F401
    from datasets import disable_progress_bars, load_dataset  # noqa: F401

    import jz3.data.packed_dataset  # noqa: F401
    from jz3.data.tokenizers import train_sentencepiece

    disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="jz3-bench-packing-"))
    try:
        files = _make_inputs(work, args.repeat, args.limit)
        samples = [shared_data_dir() / "jiuzhang3_samples" / n for n in SAMPLE_FILES]
        tok_dir = train_sentencepiece([str(f) for f in samples], work / "tok", args.vocab_size)
        base: List[Dict[str, Any]] = []
        ours: List[Dict[str, Any]] = []
        for t in range(args.trials):
            c0 = _cpu_s()
            base.append(run_baseline(files, tok_dir, args.seq_len, work / f"hf_cache{t}"))
            c1 = _cpu_s()
            ours.append(run_ours(files, tok_dir, args.seq_len, args.workers, work / f"packed{t}"))
            base[-1]["cpu_s"], ours[-1]["cpu_s"] = c1 - c0, _cpu_s() - c1
        b = min(base, key=lambda r: r["wall_s"])
        o = min(ours, key=lambda r: r["wall_s"])
        result = {
            "ours_tokens_per_s": round(o["tokens"] / o["wall_s"]),
            "baseline_tokens_per_s": round(b["tokens"] / b["wall_s"]),
            "ratio": round((o["tokens"] / o["wall_s"]) / (b["tokens"] / b["wall_s"]), 2),
            "ours_wall_s": round(o["wall_s"], 3), "baseline_wall_s": round(b["wall_s"], 3),
            "ours_cpu_s": round(o["cpu_s"], 3), "baseline_cpu_s": round(b["cpu_s"], 3),
            "ours_tokens": o["tokens"], "baseline_tokens": b["tokens"],
            "ours_sequences": o["sequences"], "baseline_sequences": b["sequences"],
            "records": sum(count_lines(f) for f in files),
            "seq_len": args.seq_len, "workers": args.workers, "trials": args.trials,
            "repeat": args.repeat, "vocab_size": args.vocab_size, "cpus": os.cpu_count(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
