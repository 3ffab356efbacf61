"""Fixtures shared by the synthesis tests: a tiny random synthesizer and a small snippet file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from jz3.config.data import SnippetConfig


@pytest.fixture(scope="session")
def tiny_synthesizer(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    from jz3.generation.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("synthesizer") / "tiny", tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def snippets_file(tmp_path_factory, shared_data) -> Path:
    """16 real snippets cut from an openly licensed textbook, with prompt types assigned."""
    from jz3.data.snippets import make_snippets

    out = tmp_path_factory.mktemp("snippets") / "snippets.jsonl"
    sc = SnippetConfig(corpus=[str(shared_data / "corpus" / "openstax-algebra.jsonl")],
                       size=400, min_size=100, max_snippets=16, seed=0)
    make_snippets(sc, None, out)
    return out


def jiuzhang_synth_records(shared_data: Path, kind: str, limit: int) -> List[Dict[str, Any]]:
    """Synth records built from the real JiuZhang3.0 samples through the completion parser."""
    from jz3.synth.parse import ParseError, parse_completion

    name = "tool_pretrain_sampled.jsonl" if kind == "tool" else "cot_pretrain_sampled.jsonl"
    out: List[Dict[str, Any]] = []
    with open(shared_data / "jiuzhang3_samples" / name, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            row = json.loads(line)
            completion = row["input"] + row["output"]
            try:
                p = parse_completion(completion, kind)
            except ParseError:
                continue
            rec = {"id": f"{kind}-{i}", "snippet_id": f"snip-{kind}-{i}", "prompt_type": kind,
                   "prompt": "(prompt)", "completion": completion, "problem": p.problem,
                   "solution": p.solution, "answer": p.answer, "model": "jiuzhang3-sample"}
            if p.code:
                rec["code"] = p.code
            out.append(rec)
            if len(out) == limit:
                break
    return out
