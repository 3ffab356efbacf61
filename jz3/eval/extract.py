"""Pull the final answer out of a model's output (boxed, 'The answer is', '####', letters, last
number). Pure string work: no sympy, no regex backtracking blow-ups on long outputs."""

from __future__ import annotations

import re
from typing import List, Optional, Tuple

from jz3.braces import boxed_spans, last_boxed

__all__ = ["extract_choice", "extract_math", "joined_boxed", "last_boxed",
           "last_math_expression"]

_ANSWER_IS = re.compile(
    r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*:?\s*(.+?)(?:\n|$)", re.IGNORECASE
)
# "The final answer is ...", "Final answer: ...", "the answer is ..." (not "check our answer: ...")
_FINAL_STATEMENT = re.compile(
    r"\b(?:(?:the\s+)?final\s+answer|the\s+answer)\s*(?:is|:)\s*:?\s*(.+?)(?:\n|$)", re.IGNORECASE)
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


_LEAD_ANSWER = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*:?\s*", re.I)
_MATH_SPAN = re.compile(r"(?<!\\)\$+(.+?)(?<!\\)\$+")
_HOPE = re.compile(r"\.?\s*I hope it is correct\.?\s*$", re.I)


# "... $ABCDEFGH$ is 120.", "... $n$ is $34$": the value the sentence ends on
_STATED_VALUE = re.compile(
    r"\s(?:is|are|was|equals|=|becomes|must be|will be|would be)\s*:?\s*"
    r"(\$[^$]{1,200}\$|-?\d[\d,]*(?:\.\d+)?(?:/\d+)?)\s*(?:[a-zA-Z ]{0,30})?[.!]?\s*$")


def _named_then_value(ans: str, first_math: str) -> Optional[str]:
    """The value a sentence states about a formula it names first (`The largest $n$ is 34.`:
    34): only when that formula has no digit (a name, not a value)."""
    if re.search(r"\d", first_math):
        return None
    m = _STATED_VALUE.search(ans)
    if not m:
        return None
    return m.group(1).strip("$ ").strip()


def _clean_tail(ans: str) -> str:
    """The answer part of 'The answer is ...' / '#### ...': the boxed or first `$...$` span
    (or the value the sentence states about a formula it names first), else the text without
    trailing punctuation (Minerva's 'I hope it is correct.' dropped)."""
    ans = _HOPE.sub("", ans.strip())
    while _LEAD_ANSWER.match(ans):  # "Final Answer: The final answer is $x$"
        ans = _LEAD_ANSWER.sub("", ans, count=1)
    if "\\boxed" in ans:
        inner = last_boxed(ans)
        if inner is not None:
            return inner
    m = _MATH_SPAN.search(ans)
    if m:
        stated = _named_then_value(ans[m.end():], m.group(1)) if m.start() > 0 else None
        return stated or m.group(1).strip()
    return re.sub(r"[\s.。]+$", "", ans).strip()


def last_output_block(text: str) -> Optional[str]:
    blocks = _OUTPUT_BLOCK.findall(text)
    return blocks[-1].strip() if blocks else None


_BOX_GAP = re.compile(
    r"\\(?:quad|qquad|text\s*\{\s*(?:and|or|,)?\s*\}|[,;!]|\\)|\$|\\[()\[\]]|\b(?:and|or)\b|"
    r"[,;&\s]|[a-zA-Z](?:_\{?\w+\}?)?\s*=")


def joined_boxed(text: str) -> Optional[str]:
    """The last box, joined with the boxes just before it when only separators stand between
    them (`\\boxed{2} and \\boxed{3}`, `x=\\boxed{1}, y=\\boxed{2}`) -> "2, 3"."""
    boxes = boxed_spans(text)
    if not boxes:
        return last_boxed(text)  # an unclosed last box = no answer
    last = last_boxed(text)
    if last is None or boxes[-1][2] != last:  # unclosed last box, or a box inside a box
        return last
    group = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        gap = text[prev[1]: group[0][0]]
        if len(gap) > 60 or "\n\n" in gap or _BOX_GAP.sub("", gap) or len(group) >= 20:
            break
        group.insert(0, prev)
    return ", ".join(b[2] for b in group)


_MATH_ENVS = ("align*", "align", "equation*", "equation", "gather*", "gather", "eqnarray*",
              "eqnarray", "multline*")
_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}(?![a-zA-Z])")
_MATRIX_ENV = re.compile(r"\\begin\{([a-zA-Z]*matrix|array)\}.*?\\end\{\1\}", re.DOTALL)
_CMD_ARG = re.compile(r"\\[a-zA-Z]+\s*\{[^{}]*\}")  # `\\text{ cm}`, `\\begin{pmatrix}`
_ASY = re.compile(r"\[asy\].*?\[/asy\]", re.DOTALL)
_TRAIL_PUNCT = re.compile(r"[\s.,;:]+$")


def _math_spans(text: str) -> List[Tuple[int, int, str]]:
    """`$..$`, `$$..$$`, `\\(..\\)`, `\\[..\\]` and align/equation environments, in order: (start,
    end, content). One left-to-right pass with `str.find` (linear on long outputs)."""
    spans = []
    i = 0
    closed_missing: set = set()
    n = len(text)
    openers = ["$", "\\(", "\\[", "\\begin{"]
    nxt = [-2] * len(openers)  # cached next position of each opener (-1: none left)
    while i < n:
        for k, op in enumerate(openers):
            if nxt[k] != -1 and nxt[k] < i:
                nxt[k] = text.find(op, i)
        j = min((x for x in nxt if x >= 0), default=-1)
        if j < 0:
            break
        if text.startswith("\\begin{", j):
            b = text.find("}", j + 7, j + 30)
            env = text[j + 7: b] if b > 0 else ""
            close = "\\end{" + env + "}"
            if env in _MATH_ENVS and close not in closed_missing:
                e = text.find(close, j)
                if e >= 0:
                    spans.append((j, e + len(close), text[j + 8 + len(env): e]))
                    i = e + len(close)
                    continue
                closed_missing.add(close)
            i = j + 7
            continue
        if text[j] == "$":
            if j > 0 and text[j - 1] == "\\":
                i = j + 1
                continue
            opener = "$$" if text.startswith("$$", j) else "$"
        else:
            opener = text[j: j + 2]
        closer = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}[opener]
        if closer in closed_missing:
            i = j + len(opener)
            continue
        e = j + len(opener)
        while True:
            e = text.find(closer, e)
            if e < 0 or closer != "$" or text[e - 1] != "\\":
                break
            e += 1
        if e < 0:
            closed_missing.add(closer)
            i = j + len(opener)
            continue
        spans.append((j, e + len(closer), text[j + len(opener): e]))
        i = e + len(closer)
    return spans


def last_math_expression(text: str) -> Optional[Tuple[int, str]]:
    """The answer in a final sentence without a box: the last math span (the last line of an
    align environment, `&=` removed), skipping prose mistaken for math (`$5 and $`) and a lone
    variable when the same sentence has another span ("so $x=5$ is the value of $x$").
    Returns (start, answer) or None."""
    spans = [sp for sp in _math_spans(text) if sp[2].strip() and not _PROSE_WORD.search(
        _CMD_ARG.sub("", sp[2]))]
    if not spans:
        return None
    start, end, content = spans[-1]
    tail = text[end:]
    stated = _named_then_value(tail[:80], content) if "\n" not in tail[:80] else None
    if stated:  # "The largest $n$ is 34."
        return start, stated
    if re.fullmatch(r"\s*[a-zA-Z]\s*", content) and len(spans) > 1:
        prev = spans[-2]
        if not re.search(r"[.!?]\s", text[prev[1]: start]):
            start, end, content = prev
    tail = text[end:]
    digit = re.search(r"\d", tail)
    if digit and re.search(r"[.!?](?:\s|$)", tail[: digit.start()]):
        return None  # a later sentence ends on a number: the last number is the better guess
    # the last line of a multi-line display; rows of a matrix are not lines
    masked = _MATRIX_ENV.sub(lambda m: m.group(0).replace("\\\\", "\x00").replace("&", "\x01"),
                             content)
    lines = [x for x in re.split(r"\\\\(?:\[[^\]]*\])?", masked) if x.strip()]
    ans = lines[-1] if lines else masked
    ans = re.sub(r"\\(?:tag|label)\{[^{}]*\}|\\nonumber", "", ans).replace("&", " ").strip()
    ans = ans.replace("\x00", "\\\\").replace("\x01", "&")
    ans = re.sub(r"^=\s*", "", ans)
    ans = _TRAIL_PUNCT.sub("", ans)
    return (start, ans) if ans else None


_BARE_OK = re.compile(r"[\\^\d]")
_LONE_WORD = re.compile(r"(?:^|\s)[a-zA-Z]{2,}(?:\s|$)")


def bare_expression(text: str) -> Optional[str]:
    """The whole output when it is one formula without delimiters (`\\frac{10}{9}`,
    `3\\sqrt{5}`, `2^{10}`): no prose words, one line, a command, power or digit in it."""
    s = text.strip()
    if not s or len(s) > 300 or "\n" in s or "$" in s or not _BARE_OK.search(s):
        return None
    plain = _CMD_ARG.sub("", s)
    if _PROSE_WORD.search(plain) or _LONE_WORD.search(plain) or "#" in s or ":" in s:
        return None
    if _LAST_NUMBER.fullmatch(s):
        return None  # a plain number: the usual path strips its separators
    return _TRAIL_PUNCT.sub("", s) or None


def extract_math(text: str) -> str:
    """Boxed (several boxes in a row joined; a later 'The final answer is' wins) > a whole
    output that is one formula > 'The answer is' > '#### N' > the final sentence's formula
    (or the value it states about a named formula) / last ```output``` line > last number."""
    boxed = joined_boxed(text)
    if boxed is not None:
        spans = boxed_spans(text)
        after = text[spans[-1][1]:] if spans else ""
        later = [h for h in _FINAL_STATEMENT.finditer(after) if re.search(r"[\d$\\]", h.group(1))]
        if later:  # a boxed intermediate result, then "The final answer is ..." : the latter
            return _clean_tail(later[-1].group(1))
        return boxed
    bare = bare_expression(text)
    if bare is not None:
        return bare
    if "[asy]" in text:  # Asymptote figures: labels and coordinates are not answers
        text = _ASY.sub(" ", text)
    last_expr = last_math_expression(text) if ("$" in text or "\\" in text) else None
    hits = list(_ANSWER_IS.finditer(text))
    if hits and (last_expr is None or last_expr[0] < hits[-1].end()):
        return _clean_tail(hits[-1].group(1))
    hashes = _HASHES.findall(text)
    if hashes:
        return _clean_tail(hashes[-1])
    out_at = text.rfind("```output")
    if last_expr is not None and last_expr[0] > out_at:
        return last_expr[1]
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
