"""The education-stage prompt library (JiuZhang3.0 KD prompts, written in our own words).

- `PROMPT_TYPES`: the nine prompt types, in order: grade_school, middle_school, high_school,
  college, amc8, amc10, amc12, aime (chain of thought) and tool (Python code solution).
- `render(prompt_type, snippet_text) -> str`: the full teacher prompt; every `{{variable}}` of the
  template (`jz3/prompts/templates/<type>.txt`) must be filled, else `PromptError`.
- `assign_prompt_type(snippet_id, mixture, seed)`: seeded, order-independent choice of a type.
"""

from jz3.prompts.mixture import DEFAULT_MIXTURE, assign_prompt_type, normalize_mixture
from jz3.prompts.renderer import (
    COT_TYPES,
    PROMPT_TYPES,
    PromptError,
    load_template,
    render,
    render_snippet,
    snippet_text,
    template_variables,
)

__all__ = [
    "COT_TYPES",
    "DEFAULT_MIXTURE",
    "PROMPT_TYPES",
    "PromptError",
    "assign_prompt_type",
    "load_template",
    "normalize_mixture",
    "render",
    "render_snippet",
    "snippet_text",
    "template_variables",
]
