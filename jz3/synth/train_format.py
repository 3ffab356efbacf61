"""Synth records -> JiuZhang3.0 training examples (`{"input", "output"}`, loss on output)."""

from __future__ import annotations

from typing import Any, Dict

from jz3.config.enums import PromptType

COT, TOOL = "cot", "tool"


def data_kind(prompt_type: str) -> str:
    """Which output folder a record goes to: tool (code solutions) or cot."""
    return TOOL if prompt_type == PromptType.tool.value else COT


def to_train_example(rec: Dict[str, Any]) -> Dict[str, Any]:
    """`## Question\\n<problem>\\n\\n## Solution\\n` (or `## Code Solution`) -> solution."""
    header = "## Code Solution" if data_kind(rec["prompt_type"]) == TOOL else "## Solution"
    return {"input": f"## Question\n{rec['problem'].strip()}\n\n{header}\n",
            "output": rec["solution"].strip(), "id": rec["id"]}
