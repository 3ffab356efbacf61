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

API (the filter stage imports it):
- `parse_completion(text, prompt_type) -> Parsed`; raises `ParseError` whose `reason` is one of
  `ParseFailure` (a short code; `str(err)` = "code: detail").
- `format_completion(problem, solution, tool=False) -> str` writes the format above.
- `extract_boxed(text) -> str | None`: content of the last `\\boxed{...}` (nested braces ok).
- `read_release_kd(path) -> (records, rejected)`: a KD set in the JiuZhang3.0 release's own
  format (see the section at the end) as jz3 KD records.

Rules: exactly one question header and one solution header, in that order, both non-empty.
Chain of thought: the solution must contain a `\\boxed{}` answer. Tool: the solution must hold a
closed ```python block; the ```output block is optional (the filter stage can run the code);
the answer is the last `\\boxed{}` after the code, else None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from jz3.braces import boxed_spans
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
_PHRASE = re.compile(r"(?:answer is|####)\s*:?\s*(\$[^$\n]+\$|[^\n]+?)\s*\.?\s*$", re.I)


def extract_boxed(text: str) -> Optional[str]:
    """Content of the last `\\boxed{...}` in `text` with balanced braces, else None."""
    spans = boxed_spans(text)
    return spans[-1][2] if spans else None


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


# ---------------------------------------------------------------- the release's own KD format
# JiuZhang3.0's teacher scripts write one JSON object per line:
#   CoT  (`synthesis_cot/generate_oai.py`): {"prompt" | "prompt_mix", "prompt_type", "chat_prompt",
#         "generated_text"}; prompt_type is a level of `prompts/cot/*.md` (grade, middle, high,
#         college, amc8, amc10, amc12, aime); the prompt ends with "## New Problem" and asks for
#         "[Problem]: ..." and "[Solution]: ..." sections.
#   tool (`synthesis_tool/generate_oai.py`): {"prompt", "response"} (the synthesizer's own
#         output: {"prompt", "generated_text"}); `prompts/tool/prompt.md` asks for
#         "[Problem Description] ... [/Problem Description]" and "[Solution] ... [/Solution]",
#         Python code and a final answer in "/boxed{}" (sic) or \boxed{}.
# `read_release_kd` turns such a file into jz3 KD records (those of `jz3.teacher.kd`), so a
# user can bring an existing KD set.

RELEASE_LEVELS = {"grade": PromptType.grade_school, "middle": PromptType.middle_school,
                  "high": PromptType.high_school, "college": PromptType.college,
                  "amc8": PromptType.amc8, "amc10": PromptType.amc10, "amc12": PromptType.amc12,
                  "aime": PromptType.aime, "tool": PromptType.tool}
_REL_MARK = r"^[ \t]*(#{1,4}[ \t]*)?[*\[ \t]*(?:new[ \t]+)?(?:%s)([\]*: \t]*)"
_REL_Q = re.compile(_REL_MARK % r"problem(?:[ \t]+description)?|question", re.I | re.M)
_REL_S = re.compile(_REL_MARK % r"solution", re.I | re.M)
_REL_CLOSE = re.compile(r"^[ \t]*\[/(?:problem(?:[ \t]+description)?|solution)\][ \t]*$\n?",
                        re.I | re.M)
_REL_SNIPPET = (re.compile(r"## Math Content\s*\n```[^\n]*\n(.*?)\n```\s*\n", re.S),
                re.compile(r"inspiration:\s*\n```[^\n]*\n(.*?)\n```\s*\n", re.S))


def release_prompt_type(value: Any, prompt: str = "") -> PromptType:
    """A release prompt_type (`grade`, `amc10`, ...; or a jz3 name); none = tool when the
    prompt is the tool prompt (it asks for a [Problem Description])."""
    if value is None or value == "":
        if "[Problem Description]" in prompt or "Python code" in prompt:
            return PromptType.tool
        raise ValueError("no prompt_type and the prompt is not the tool prompt")
    v = str(value).strip().lower()
    if v in RELEASE_LEVELS:
        return RELEASE_LEVELS[v]
    try:
        return PromptType(v)
    except ValueError:
        raise ValueError(f"unknown prompt_type {value!r} (release levels: "
                         f"{', '.join(RELEASE_LEVELS)})") from None


def release_snippet(prompt: str) -> Optional[str]:
    """The math text a release prompt embeds (in a ``` block), else None."""
    for pat in _REL_SNIPPET:
        m = pat.search(prompt)
        if m and m.group(1).strip():
            return m.group(1)
    return None


def _release_marker(pat: re.Pattern, text: str, start: int) -> Optional[re.Match]:
    """First section marker: "[Problem]:", "**Solution:**", "### Problem", or the keyword alone
    on its line; a sentence that merely starts with the word is not one."""
    for m in pat.finditer(text, start):
        tail = m.group(2)
        alone = text[m.end():].split("\n", 1)[0].strip() == ""
        if m.group(1) or "]" in tail or ":" in tail or "**" in tail or alone:
            return m
    return None


def normalize_release_completion(text: str, tool: bool) -> str:
    """Rewrite a "[Problem]: ... [Solution]: ..." completion into the `## Question` /
    `## Solution` (`## Code Solution`) format; raises ParseError when a section is missing."""
    if not text or not text.strip():
        raise ParseError(ParseFailure.empty, "the completion is empty")
    body = _REL_CLOSE.sub("", text.replace("/boxed{", "\\boxed{").replace("\\\\boxed{", "\\boxed{"))
    q = _release_marker(_REL_Q, body, 0)
    s = _release_marker(_REL_S, body, q.end() if q else 0)
    if q is None:
        raise ParseError(ParseFailure.missing_question, "no [Problem] / [Problem Description] section")
    if s is None:
        raise ParseError(ParseFailure.missing_solution, "no [Solution] section")
    return format_completion(body[q.end():s.start()], body[s.end():], tool=tool)


def parse_release_completion(text: str, prompt_type: Union[str, PromptType]) -> Tuple[str, Parsed]:
    """(jz3-format completion, Parsed) of a release-format teacher completion; text already in
    the jz3 format is accepted as is. The release's CoT prompts do not ask for a boxed answer,
    so `answer` may be None."""
    pt = PromptType(prompt_type)
    tool = pt == PromptType.tool
    if _Q_HEADER.search(text) and _S_HEADER.search(text):
        completion = text
    else:
        completion = normalize_release_completion(text, tool)
    return completion, parse_completion(completion, pt, require_answer=False)


def kd_record_from_release(row: Dict[str, Any], where: str, reprompt: bool = True) -> Dict[str, Any]:
    """One jz3 KD record from one release row (ValueError / ParseError name what is wrong).

    With `reprompt` the prompt is re-rendered from the embedded math text with jz3's template of
    the same prompt type, so that the synthesizer learns the prompts jz3's synthesis will use;
    the release's prompt and completion are kept as `source_prompt` / `source_completion`."""
    if not isinstance(row, dict):
        raise ValueError(f"not a JSON object ({type(row).__name__})")
    prompt = row.get("prompt") or row.get("prompt_mix")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("no prompt / prompt_mix text")
    text = next((row[k] for k in ("generated_text", "response", "completion") if row.get(k)), None)
    if not isinstance(text, str):
        raise ValueError("no generated_text / response text")
    pt = release_prompt_type(row.get("prompt_type"), prompt)
    completion, parsed = parse_release_completion(text, pt)
    snippet = release_snippet(prompt)
    new_prompt = prompt
    if reprompt:
        if snippet is None:
            raise ValueError("no ``` math-content block in the prompt to re-render it from")
        from jz3.prompts import render

        new_prompt = render(pt, snippet)
    rid = str(row.get("id", where))
    return {"id": f"{rid}|{pt.value}", "snippet_id": rid, "prompt_type": pt.value,
            "prompt": new_prompt, "completion": completion, "problem": parsed.problem,
            "solution": parsed.solution, "answer": parsed.answer,
            "model": str(row.get("model", "release-kd")), "usage": {},
            "snippet": snippet, "source_prompt": prompt, "source_completion": text}


def read_release_kd(path: Union[str, Path], reprompt: bool = True
                    ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(KD records, rejected rows `{reason, file, line, record}`) of a release-format KD file
    (JSON lines, or a JSON array as `datasets.Dataset.to_json(lines=False)` writes).
    Every non-blank line is in exactly one of the two lists."""
    import json

    p = Path(path)
    data = p.read_bytes()
    rows: List[Tuple[int, Any, Optional[str]]] = []
    if data.lstrip().startswith(b"["):
        try:
            raw = data.decode("utf-8")
            rows = [(i + 1, r, None) for i, r in enumerate(json.loads(raw))]
        except UnicodeDecodeError as e:
            rows = [(data[:e.start].count(b"\n") + 1, data[:200].decode("utf-8", "replace"),
                     f"invalid UTF-8 at byte {e.start} of the file")]
        except json.JSONDecodeError as e:
            rows = [(e.lineno, raw[:200], f"malformed JSON array: {e.msg}")]
    else:
        for n, bline in enumerate(data.split(b"\n"), 1):
            if not bline.strip():
                continue
            try:
                line = bline.decode("utf-8")
            except UnicodeDecodeError as e:
                rows.append((n, bline.decode("utf-8", "replace"),
                             f"invalid UTF-8 at byte {e.start} of the line"))
                continue
            try:
                rows.append((n, json.loads(line), None))
            except json.JSONDecodeError as e:
                rows.append((n, line, f"malformed JSON: {e.msg} at column {e.colno}"))
    good: List[Dict[str, Any]] = []
    bad: List[Dict[str, Any]] = []
    for n, row, err in rows:
        if err is None:
            try:
                good.append(kd_record_from_release(row, f"{p.stem}:{n}", reprompt))
                continue
            except (ParseError, ValueError) as e:
                err = f"parse: {e}" if isinstance(e, ParseError) else str(e)
        bad.append({"reason": err, "file": str(p), "line": n, "record": row})
    return good, bad


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m jz3.synth.parse release-kd IN OUT [--keep-prompts]`: convert a release-format
    KD file into jz3 KD records (OUT) and its rejected rows (OUT's `<stem>.rejected.jsonl`)."""
    import argparse
    import json

    from jz3.data.records import write_jsonl

    ap = argparse.ArgumentParser(prog="python -m jz3.synth.parse")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rk = sub.add_parser("release-kd", help="convert a JiuZhang3.0-release KD file")
    rk.add_argument("src")
    rk.add_argument("out")
    rk.add_argument("--keep-prompts", action="store_true",
                    help="keep the release's prompts instead of re-rendering jz3's")
    args = ap.parse_args(argv)
    good, bad = read_release_kd(args.src, reprompt=not args.keep_prompts)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, good)
    rej = out.with_name(out.stem + ".rejected.jsonl")
    write_jsonl(rej, bad)
    print(json.dumps({"records": len(good), "rejected": len(bad), "out": str(out),
                      "rejected_file": str(rej)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
