"""Turn a synthesizer result into a synth record (or a failure reason)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from jz3.config.enums import PromptType
from jz3.generation import GenRequest, GenResult


def synth_id(snippet_id: str) -> str:
    return f"syn-{snippet_id}"


def to_synth_record(snippet: Dict[str, Any], req: GenRequest, prompt: str, res: GenResult,
                    model_name: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """(record, None) when the completion parses into problem/solution, else (None, reason)."""
    if res.error:
        return None, res.error
    if res.finish_reason == "length":
        return None, (f"truncated: no end of sequence within max_new_tokens={req.max_new_tokens} "
                      f"({res.completion_tokens} tokens)")
    from jz3.synth.parse import ParseError, parse_completion

    try:
        parsed = parse_completion(res.completion, snippet["prompt_type"])
    except ParseError as e:
        return None, f"parse: {e}"
    rec: Dict[str, Any] = {
        "id": synth_id(snippet["id"]),
        "snippet_id": snippet["id"],
        "prompt_type": snippet["prompt_type"],
        "prompt": prompt,
        "completion": res.completion,
        "problem": parsed.problem,
        "solution": parsed.solution,
        "answer": parsed.answer,
        "model": model_name,
        "usage": {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                  "seed": req.seed, "temperature": req.temperature},
    }
    for extra in ("code", "code_output"):
        value = getattr(parsed, extra, None)
        if value is not None:
            rec[extra] = value
    return rec, None


def is_tool(prompt_type: str) -> bool:
    return prompt_type == PromptType.tool.value
