"""Parse a teacher or synthesizer completion into problem / solution / answer (+ code, output).

The completion format (what the teacher is asked for and what the synthesizer learns to write;
it matches the `## Question` / `## Solution` / `## Code Solution` headers of the JiuZhang3.0
data)::

    ## Question
    <problem>

    ## Solution                      (chain-of-thought prompt types)
    <steps ... \\boxed{answer}>

    ## Code Solution                 (the `tool` prompt type)
    ```python
    <program>
    ```
    ```output
    <printed output>
    ```
    <sentence with \\boxed{answer}>

API (engineer F's filter stage imports it):
- `parse_completion(text, prompt_type) -> Parsed`; raises `ParseError` whose `reason` is one of
  `ParseFailure` (a short code; `str(err)` = "code: detail").
- `format_completion(problem, solution, tool=False) -> str` writes the format above.
- `extract_boxed(text) -> str | None`: content of the last `\\boxed{...}` (nested braces ok).

Rules: exactly one question header and one solution header, in that order, both non-empty.
Chain of thought: the solution must contain a `\\boxed{}` answer. Tool: the solution must hold a
closed ```python block; the ```output block is optional (the filter stage can run the code);
the answer is the last `\\boxed{}` after the code, else None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Optional, Union

from jz3.config.enums import PromptType


class ParseFailure(str, Enum):
    empty = "empty"
    missing_question = "missing_question"
    missing_solution = "missing_solution"
    duplicate_header = "duplicate_header"
    empty_question = "empty_question"
    empty_solution = "empty_solution"
    missing_answer = "missing_answer"
    empty_answer = "empty_answer"
    missing_code = "missing_code"
    unclosed_code = "unclosed_code"
    wrong_solution_kind = "wrong_solution_kind"


class ParseError(ValueError):
    """A completion that does not parse; `reason` is a `ParseFailure`."""

    def __init__(self, reason: ParseFailure, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


@dataclass(frozen=True)
class Parsed:
    problem: str
    solution: str  # everything under the solution header (code blocks included)
    answer: Optional[str]
    code: Optional[str] = None  # tool: the Python program
    code_output: Optional[str] = None  # tool: its printed output, as the writer claims it


_Q_HEADER = re.compile(r"^[ \t]*#{1,4}[ \t]*(?:question|problem)[ \t]*:?[ \t]*$", re.I | re.M)
_S_HEADER = re.compile(
    r"^[ \t]*#{1,4}[ \t]*(code[ \t]+solution|(?:step[- ]by[- ]step[ \t]+)?solution)[ \t]*:?[ \t]*$",
    re.I | re.M)
_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[ \t]*$", re.M)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PHRASE = re.compile(r"(?:answer is|####)\s*:?\s*(\$[^$\n]+\$|[^\n]+?)\s*\.?\s*$", re.I)


def extract_boxed(text: str) -> Optional[str]:
    """Content of the last `\\boxed{...}` in `text` with balanced braces, else None."""
    for m in reversed(list(_BOXED.finditer(text))):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                i += 2
                continue
            depth += (c == "{") - (c == "}")
            i += 1
        if depth == 0:
            return text[m.end():i - 1].strip()
    return None


def _code_blocks(solution: str) -> list[tuple[str, str, int]]:
    """(language, body, end offset) of each fenced block; raises on an unclosed fence."""
    blocks = []
    fences = list(_FENCE.finditer(solution))
    i = 0
    while i < len(fences):
        opening = fences[i]
        if i + 1 >= len(fences):
            raise ParseError(ParseFailure.unclosed_code,
                             f"code fence opened at offset {opening.start()} is never closed")
        closing = fences[i + 1]
        if closing.group(1):
            raise ParseError(ParseFailure.unclosed_code,
                             f"fence at offset {opening.start()} is followed by another opening fence")
        body = solution[opening.end():closing.start()].strip("\n")
        blocks.append((opening.group(1).lower(), body, closing.end()))
        i += 2
    return blocks


def extract_answer_phrase(text: str) -> Optional[str]:
    """The answer of a closing "The answer is: X" / "#### X" line (no \\boxed), else None."""
    m = _PHRASE.search(text.strip()[-300:])
    if not m:
        return None
    ans = m.group(1).strip().strip("$").strip()
    return ans or None


def parse_completion(text: str, prompt_type: Union[str, PromptType], *,
                     require_answer: bool = True) -> Parsed:
    """Split `text` into a `Parsed`; raises `ParseError(reason)` when it does not follow the format.

    Chain of thought: the answer is the last `\\boxed{}`, else a closing "The answer is X"
    sentence; with `require_answer` (the default, as the teacher prompts demand a boxed
    answer) a solution without one is rejected, otherwise `answer` is None.
    """
    try:
        pt = PromptType(prompt_type)
    except ValueError:
        names = ", ".join(t.value for t in PromptType)
        raise ValueError(f"unknown prompt type {prompt_type!r} (expected one of: {names})") from None
    if not text or not text.strip():
        raise ParseError(ParseFailure.empty, "the completion is empty")
    qs = list(_Q_HEADER.finditer(text))
    ss = list(_S_HEADER.finditer(text))
    if not qs:
        raise ParseError(ParseFailure.missing_question, "no '## Question' header")
    if not ss:
        raise ParseError(ParseFailure.missing_solution, "no '## Solution' header")
    if len(qs) > 1 or len(ss) > 1:
        raise ParseError(ParseFailure.duplicate_header,
                         f"{len(qs)} question and {len(ss)} solution headers (expected one each)")
    q, s = qs[0], ss[0]
    if s.start() < q.start():
        raise ParseError(ParseFailure.missing_question, "the solution header comes before the question")
    problem = text[q.end():s.start()].strip()
    solution = text[s.end():].strip()
    if not problem:
        raise ParseError(ParseFailure.empty_question, "nothing under the question header")
    if not solution:
        raise ParseError(ParseFailure.empty_solution, "nothing under the solution header")
    is_code_header = s.group(1).lower().startswith("code")
    blocks = _code_blocks(solution)
    if pt == PromptType.tool:
        return _parse_tool(problem, solution, blocks, is_code_header)
    if is_code_header:
        raise ParseError(ParseFailure.wrong_solution_kind,
                         f"a '## Code Solution' for chain-of-thought prompt type {pt.value!r}")
    answer = extract_boxed(solution)
    if answer is None:
        answer = extract_answer_phrase(solution)
    if answer is None and require_answer:
        raise ParseError(ParseFailure.missing_answer, "no \\boxed{...} final answer in the solution")
    if answer is not None and not answer:
        raise ParseError(ParseFailure.empty_answer, "the \\boxed{} answer is empty")
    return Parsed(problem=problem, solution=solution, answer=answer)


def _parse_tool(problem: str, solution: str, blocks: list[tuple[str, str, int]],
                is_code_header: bool) -> Parsed:
    code_i = next((i for i, b in enumerate(blocks) if b[0] in ("python", "py")), None)
    if code_i is None:
        kind = "no ```python block" + ("" if is_code_header else " (and a plain '## Solution' header)")
        raise ParseError(ParseFailure.missing_code, kind)
    _, code, code_end = blocks[code_i]
    if not code.strip():
        raise ParseError(ParseFailure.missing_code, "the ```python block is empty")
    output = next((b[1] for b in blocks[code_i + 1:] if b[0] == "output"), None)
    answer = extract_boxed(solution[code_end:])
    if answer is not None and not answer:
        raise ParseError(ParseFailure.empty_answer, "the \\boxed{} answer is empty")
    return Parsed(problem=problem, solution=solution, answer=answer, code=code, code_output=output)


def format_completion(problem: str, solution: str, tool: bool = False) -> str:
    """The completion text in the format `parse_completion` reads."""
    header = "## Code Solution" if tool else "## Solution"
    return f"## Question\n{problem.strip()}\n\n{header}\n{solution.strip()}\n"
