"""The package's one brace matcher: `{...}` groups and `\\boxed{...}` answers in LaTeX text.

Escaped braces (`\\{`, `\\}`) and any other backslash pair are skipped, so `\\boxed{\\left\\{1\\right.}`
and `\\boxed{a\\\\}` close where LaTeX closes them. Linear time; no regular expressions.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

BOX_COMMANDS = ("\\boxed", "\\fbox")


def match_brace(text: str, i: int, end: Optional[int] = None) -> int:
    """Index of the `}` that closes the `{` at `text[i]`, or -1 when it is never closed."""
    depth = 0
    n = len(text) if end is None else end
    k = i
    while k < n:
        c = text[k]
        if c == "\\":
            k += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return k
        k += 1
    return -1


def balanced(s: str) -> bool:
    """Do the braces of `s` pair up (escaped ones skipped)?"""
    depth, k = 0, 0
    while k < len(s):
        c = s[k]
        if c == "\\":
            k += 2
            continue
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return False
        k += 1
    return depth == 0


def _box_at(text: str, j: int, cmd: str) -> Tuple[int, Optional[str]]:
    """(end, content) of the box command at `j`; content None when cut off. `\\boxed 5`
    (no braces) takes the run up to the next space or `$`."""
    k = j + len(cmd)
    while k < len(text) and text[k] == " ":
        k += 1
    if k < len(text) and text[k] == "{":
        e = match_brace(text, k)
        return (e + 1, text[k + 1: e].strip()) if e >= 0 else (len(text), None)
    e = k
    while e < len(text) and not text[e].isspace() and text[e] != "$":
        e += 1
    return (e, text[k:e]) if e > k else (k, None)


def boxed_spans(text: str, commands: Tuple[str, ...] = BOX_COMMANDS
                ) -> List[Tuple[int, int, str]]:
    """Every complete box, left to right: (start, end, content); a box inside another box is
    not listed separately; scanning stops at a box that is never closed."""
    out: List[Tuple[int, int, str]] = []
    i = 0
    while True:
        starts = [(j, c) for c in commands if (j := text.find(c, i)) >= 0]
        if not starts:
            return out
        j, cmd = min(starts)
        if text[j + len(cmd): j + len(cmd) + 1].isalpha():  # `\\boxedfoo` is another command
            i = j + len(cmd)
            continue
        end, content = _box_at(text, j, cmd)
        if content is None:
            if end >= len(text):
                return out  # cut off inside the box
            i = end
            continue
        out.append((j, end, content))
        i = end


def last_boxed(text: str, commands: Tuple[str, ...] = BOX_COMMANDS) -> Optional[str]:
    """Content of the last box (the last one that starts; None when it is cut off)."""
    best, cmd_used = -1, ""
    for cmd in commands:
        i = text.rfind(cmd)
        while i >= 0 and text[i + len(cmd): i + len(cmd) + 1].isalpha():
            i = text.rfind(cmd, 0, i)
        if i > best:
            best, cmd_used = i, cmd
    if best < 0:
        return None
    return _box_at(text, best, cmd_used)[1]


def unbox(text: str) -> str:
    """`text` with every box replaced by its content (the answer stays, unmarked)."""
    for s, e, c in reversed(boxed_spans(text, ("\\boxed",))):
        text = text[:s] + c + text[e:]
    return text
