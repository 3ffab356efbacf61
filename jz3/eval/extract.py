"""Pull the final answer out of a model's output (boxed, 'The answer is', '####', letters, last
number). Pure string work: no sympy, no regex backtracking blow-ups on long outputs."""

from __future__ import annotations

import re
from typing import List, Optional

_BOX_CMDS = ("\\boxed", "\\fbox")
_ANSWER_IS = re.compile(
    r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*:?\s*(.+?)(?:\n|$)", re.IGNORECASE
)
_HASHES = re.compile(r"####\s*(.+?)\s*(?:\n|$)")
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_OUTPUT_BLOCK = re.compile(r"```output\n(.*?)```", re.DOTALL)
_LETTER_PATTERNS = [
    re.compile(r"answer\s*(?:is|:)?\s*:?\s*\(?\s*\\?(?:text\{|textbf\{|mathrm\{)?\(?([A-E])\b", re.I),
    re.compile(r"\\boxed\{\s*\\?(?:text\{|textbf\{|mathrm\{)?\(?([A-E])\)?\}?\s*\}"),
    re.compile(r"\(([A-E])\)"),
    re.compile(r"(?:^|\s)([A-E])[.):](?:\s|$)"),
    re.compile(r"(?:^|\s)([A-E])\s*$"),
]


def last_boxed(text: str) -> Optional[str]:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`, `\\boxed 5`), braces matched."""
    best = -1
    cmd_used = ""
    for cmd in _BOX_CMDS:
        i = text.rfind(cmd)
        if i > best:
            best, cmd_used = i, cmd
    if best < 0:
        return None
    j = best + len(cmd_used)
    while j < len(text) and text[j] == " ":
        j += 1
    if j < len(text) and text[j] != "{":  # `\boxed 5`
        m = re.match(r"[^\s$]+", text[j:])
        return m.group(0) if m else None
    depth = 0
    for k in range(j, len(text)):
        if text[k] == "{":
            depth += 1
        elif text[k] == "}":
            depth -= 1
            if depth == 0:
                return text[j + 1: k].strip()
    return None  # unbalanced: the model was cut off inside the box


_LEAD_ANSWER = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*:?\s*", re.I)
_MATH_SPAN = re.compile(r"(?<!\\)\$+(.+?)(?<!\\)\$+")
_HOPE = re.compile(r"\.?\s*I hope it is correct\.?\s*$", re.I)


def _clean_tail(ans: str) -> str:
    """The answer part of 'The answer is ...' / '#### ...': the boxed or first `$...$` span,
    else the text without trailing punctuation (Minerva's 'I hope it is correct.' dropped)."""
    ans = _HOPE.sub("", ans.strip())
    while _LEAD_ANSWER.match(ans):  # "Final Answer: The final answer is $x$"
        ans = _LEAD_ANSWER.sub("", ans, count=1)
    if "\\boxed" in ans:
        inner = last_boxed(ans)
        if inner is not None:
            return inner
    m = _MATH_SPAN.search(ans)
    if m:
        return m.group(1).strip()
    return re.sub(r"[\s.。]+$", "", ans).strip()


def last_output_block(text: str) -> Optional[str]:
    blocks = _OUTPUT_BLOCK.findall(text)
    return blocks[-1].strip() if blocks else None


def extract_math(text: str) -> str:
    """Boxed > 'The answer is' > '#### N' > last ```output``` line > last number."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    hits: List[str] = _ANSWER_IS.findall(text)
    if hits:
        return _clean_tail(hits[-1])
    hashes = _HASHES.findall(text)
    if hashes:
        return _clean_tail(hashes[-1])
    out = last_output_block(text)
    if out:
        return out.splitlines()[-1].strip()
    nums = _LAST_NUMBER.findall(text)
    return nums[-1].replace(",", "") if nums else ""


def extract_choice(text: str, letters: str = "ABCDE") -> str:
    """A multiple-choice letter: 'The answer is (C)', '\\boxed{C}', '(C)', last lone letter."""
    boxed = last_boxed(text)
    if boxed is not None:
        m = re.search(r"\b([A-E])\b", boxed)
        if m and m.group(1) in letters:
            return m.group(1)
    for pat in _LETTER_PATTERNS:
        found = [x for x in pat.findall(text) if x in letters]
        if found:
            return found[-1]
    return ""
