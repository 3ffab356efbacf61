"""Load the prompt templates shipped in `templates/*.txt` and fill their `{{variables}}`."""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any, Dict, Mapping, Set, Tuple, Union

from jz3.config.enums import PromptType

PROMPT_TYPES: Tuple[PromptType, ...] = tuple(PromptType)
COT_TYPES: Tuple[PromptType, ...] = tuple(t for t in PromptType if t != PromptType.tool)
_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class PromptError(ValueError):
    """A template that is missing, or a render that leaves a variable unfilled."""


def as_prompt_type(value: Union[str, PromptType]) -> PromptType:
    try:
        return PromptType(value)
    except ValueError:
        names = ", ".join(t.value for t in PromptType)
        raise PromptError(f"unknown prompt type {value!r} (expected one of: {names})") from None


@functools.cache
def load_template(prompt_type: Union[str, PromptType]) -> str:
    """The raw template text of a prompt type."""
    pt = as_prompt_type(prompt_type)
    path = resources.files("jz3.prompts").joinpath("templates", f"{pt.value}.txt")
    if not path.is_file():
        raise PromptError(f"template file for {pt.value!r} not found: {path}")
    return path.read_text(encoding="utf-8")


def template_variables(prompt_type: Union[str, PromptType]) -> Set[str]:
    return set(_VAR.findall(load_template(prompt_type)))


def render(prompt_type: Union[str, PromptType], snippet_text: str, **extra: str) -> str:
    """Fill the template of `prompt_type` with `snippet` (and any `extra` variables).

    Raises `PromptError` when a template variable has no value, a value is empty, or a value
    is given for a variable the template does not have.
    """
    pt = as_prompt_type(prompt_type)
    values: Dict[str, str] = {"snippet": snippet_text, **extra}
    needed = template_variables(pt)
    missing = sorted(needed - values.keys())
    if missing:
        raise PromptError(f"template {pt.value!r}: no value for variable(s) {missing}")
    unknown = sorted(values.keys() - needed)
    if unknown:
        raise PromptError(f"template {pt.value!r} has no variable(s) {unknown}")
    empty = sorted(k for k, v in values.items() if not isinstance(v, str) or not v.strip())
    if empty:
        raise PromptError(f"template {pt.value!r}: empty value for variable(s) {empty}")
    # Substitute in one pass, so `{{...}}` inside a snippet is never expanded.
    out = _VAR.sub(lambda m: values[m.group(1)], load_template(pt))
    return out


def snippet_text(snippet: Mapping[str, Any]) -> str:
    """A snippet record's text as its prompt shows it: in a ``` fence when the record says
    `fence` (the release's textbook prompts), else as it is."""
    text = snippet["text"]
    return f"```\n{text}\n```" if snippet.get("fence") else text


def render_snippet(snippet: Mapping[str, Any]) -> str:
    """`render` of a snippet record: its `prompt_type`, its `snippet_text`."""
    return render(snippet["prompt_type"], snippet_text(snippet))
