"""Prompts in JiuZhang3.0's format (the release's `jiuzhang` / `jiuzhang_tora` templates):
`## Question\\n{q}\\n\\n## Solution\\n` (chain of thought) or `## Code Solution\\n` (tool), with
`k` exemplars first, separated by three newlines. Exemplars ship in `jz3/eval/fewshot/*.json`
(from training splits or written for jz3, never from test sets); which set a benchmark uses and
how many shots it gets per setting come from the registry (`jz3.benchmarks`)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from jz3.benchmarks import spec
from jz3.config.enums import EvalSetting
from jz3.config.eval import ShotMode

FEWSHOT_DIR = Path(__file__).parent / "fewshot"
HEADERS = {EvalSetting.cot: "## Solution", EvalSetting.tool: "## Code Solution"}
SEPARATOR = "\n\n\n"
# Stop strings: the model starting the next question; in the tool setting also the point where
# the harness must run the code and paste its output.
COT_STOPS = ["\n## Question", "\n\n\n\n"]
TOOL_STOPS = ["```output", "\n## Question"]


def format_example(question: str, setting: EvalSetting, solution: str = "") -> str:
    return f"## Question\n{question.strip()}\n\n{HEADERS[EvalSetting(setting)]}\n{solution}"


@cache
def load_fewshot(name: str) -> List[Dict[str, str]]:
    path = FEWSHOT_DIR / f"{name}.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    for i, r in enumerate(rows):
        if not r.get("question") or not r.get("solution"):
            raise ValueError(f"{path}: exemplar {i} lacks question/solution")
    return rows


def exemplars(benchmark: str, setting: EvalSetting) -> List[Dict[str, str]]:
    """All exemplars available for a benchmark in a setting."""
    if EvalSetting(setting) == EvalSetting.tool:
        return load_fewshot("tool")
    return load_fewshot(spec(benchmark).exemplars)


def num_shots(benchmark: str, setting: EvalSetting, mode: ShotMode,
              counts: Optional[Mapping[str, int]] = None) -> int:
    """Exemplars this benchmark x setting gets under `mode` (capped by those shipped); `counts`
    (`eval.shot_counts`) overrides the CoT count of a benchmark under `release`."""
    s, setting = spec(benchmark), EvalSetting(setting)
    if mode == ShotMode.release:
        k = s.shots.get(setting, 0)
        if counts and benchmark in counts and setting == EvalSetting.cot and k:
            k = int(counts[benchmark])
    elif mode == ShotMode.base:
        k = s.base_shots if setting == EvalSetting.cot else 0
    else:
        k = 0
    return min(k, len(exemplars(benchmark, setting))) if k else 0


def build_prompt(question: str, benchmark: str, setting: EvalSetting, shots: int = 0) -> str:
    """The full prompt the model continues: the first `shots` exemplars, then the question."""
    setting = EvalSetting(setting)
    parts = [format_example(ex["question"], setting, ex["solution"].strip()) + SEPARATOR
             for ex in exemplars(benchmark, setting)[:shots]] if shots else []
    parts.append(format_example(question, setting))
    return "".join(parts)


def stop_strings(setting: EvalSetting) -> List[str]:
    return list(TOOL_STOPS if EvalSetting(setting) == EvalSetting.tool else COT_STOPS)
