"""String normalisation of answers and exact number parsing (no sympy: the fast path).

The rules and why each exists are documented in docs/GRADING.md. In short: strip LaTeX layout
(`\\left`, `\\!`, `\\,`, `$`, `\\text{}` around numbers, trailing units, degrees, percent), unify
`\\dfrac`/`\\tfrac`/`\\frac12`, remove thousands separators only where they are real thousands
groups (so `(1,2)` stays a pair), and parse numbers exactly as `Fraction` so that `0.333` and
`1/3` differ while `$29.00` and `29` agree.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction
from typing import Optional

from jz3.braces import balanced

_SPACING = re.compile(r"(?<!\\)\\[!,;:> ]|\\quad|\\qquad|~")
_LEFT_RIGHT = re.compile(r"\\(left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![a-zA-Z])\s*")
_TEXT_CMD = re.compile(
    r"\\(?:text|textbf|textit|textnormal|textrm|textup|textsf|texttt|mathrm|mathbf|mathit|"
    r"mathsf|mathtt|mbox|hbox|operatorname|boldsymbol)\s*\{([^{}]*)\}"
)
_DEGREES = re.compile(r"\^\s*(?:\{\s*\\circ\s*\}|\\circ)|\\circ|°|\\degree")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_UNIT_WORDS = (
    "degrees", "degree", "dollars", "dollar", "cents", "cent", "units", "unit", "square",
    "sq", "inches", "inch", "feet", "foot", "ft", "meters", "meter", "cm", "km", "mm", "m",
    "miles", "mile", "hours", "hour", "minutes", "minute", "seconds", "second", "days", "day",
    "years", "year", "pounds", "pound", "kg", "grams", "gram", "g", "mph", "percent",
)
_TRAILING_UNIT = re.compile(
    r"^(.*?[\d}])\s+(?:(?:" + "|".join(_UNIT_WORDS) + r")\b\s*(?:\^\s*\{?\d\}?)?\s*)+\.?$",
    re.IGNORECASE,
)
_NUMBER_THEN_WORDS = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?)\s+([a-zA-Z][a-zA-Z\s'-]*)$")
_IN_SET = re.compile(r"^(?:[a-zA-Z]|\\[a-zA-Z]+)\s*\\in(?![a-zA-Z])\s*")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_HALF_SHORT = re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)")
_FRAC_FIRST_SHORT = re.compile(r"\\frac\s*(\d)\s*\{([^{}]*)\}")
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\d+|[a-zA-Z])")
_MIXED_NUMBER = re.compile(r"^(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_SIMPLE_FRAC = re.compile(r"^([+-]?)\\frac\{([+-]?[\d.]+)\}\{([+-]?[\d.]+)\}$")
_SLASH_FRAC = re.compile(r"^([+-]?[\d.]+)/([+-]?[\d.]+)$")
_SCI = re.compile(r"^([+-]?[\d.]+)\s*(?:\\times|\\cdot|\*|x)\s*10\^\{?([+-]?\d+)\}?$")


def strip_dollar_math(s: str) -> str:
    """Remove math delimiters `$...$`, `\\(...\\)`, `\\[...\\]` around an answer."""
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left): len(s) - len(right)].strip()
    return s


def _unwrap_text(s: str) -> str:
    """`\\text{13}` -> `13`; `5\\text{ cm}` -> `5 cm` (units are stripped afterwards)."""
    prev = None
    while prev != s:
        prev = s
        s = _TEXT_CMD.sub(lambda m: " " + m.group(1).strip() + " " if m.start() else m.group(1), s)
    return s.strip()


_LE = re.compile(r"\\(?:leqslant|leqq|leq|le)(?![a-zA-Z])|<=|≤|⩽")
_GE = re.compile(r"\\(?:geqslant|geqq|geq|ge)(?![a-zA-Z])|>=|≥|⩾")
_NE = re.compile(r"\\(?:neq|ne)(?![a-zA-Z])|\\not\s*=|(?<![\w)!}])\s*!=|≠")  # `5!=120` is a factorial
_LT_GT = re.compile(r"\\(lt|gt)(?![a-zA-Z])")
_OR_AND = re.compile(r"\s+(or|and)\s+|\\(lor|vee|land|wedge)(?![a-zA-Z])\s*", re.IGNORECASE)
_REALS = re.compile(r"\\mathbb\s*\{?\s*R\s*\}?|\\R(?![a-zA-Z])")
_BRACED_COMMA = re.compile(r"(?<=\d)\s*\{\s*,\s*\}\s*(?=\d)|\{,\}")
_GROUPED_IN_BRACES = re.compile(r"\{(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?)\}")
_SUB_BRACES = re.compile(r"_\{([a-zA-Z0-9])\}")
_CHOICE_THEN_VALUE = re.compile(r"^\(([A-E])\)\s+\S.*$")
_CHOICE = re.compile(r"^\(([A-E])\)$")
_KNOWN_CMDS = frozenset("""
frac dfrac tfrac cfrac sqrt pi infty cdot cdots ldots dots times div pm mp sin cos tan cot sec csc
arcsin arccos arctan sinh cosh tanh log ln exp lg le ge ne lt gt lor land vee wedge cup cap in
notin emptyset varnothing text mbox begin end alpha beta gamma delta epsilon varepsilon theta
vartheta phi varphi lambda mu nu rho sigma tau omega Delta Gamma Theta Lambda Sigma Omega Phi Pi
circ angle triangle left right binom dbinom tbinom lfloor rfloor lceil rceil mathbb mathrm
boxed overline underline hat vec bar perp parallel approx equiv sim propto max min gcd lcm det
mod bmod pmod deg lim sum prod int
""".split())
_GLUED_CMD = re.compile(r"\\([a-zA-Z]+)")


def _unglue(m: re.Match) -> str:
    """`\\cotx` -> `\\cot x`, `\\pir` -> `\\pi r` (a known command glued to a variable)."""
    name = m.group(1)
    if name in _KNOWN_CMDS:
        return m.group(0)
    for k in range(len(name) - 1, 1, -1):
        if name[:k] in _KNOWN_CMDS:
            return "\\" + name[:k] + " " + name[k:]
    return m.group(0)


_CMD_SPACE = re.compile(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])")


def _or_and(m: re.Match) -> str:
    word = (m.group(1) or m.group(2)).lower()
    return "\\lor " if word in ("or", "lor", "vee") else "\\land "


_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d*[1-9])?")  # already canonical: `12`, `-0.5`


def normalize_answer(ans: str) -> str:
    """Canonical string form of an extracted answer (idempotent; cached for short answers)."""
    ans = str(ans).strip()
    if _PLAIN_NUMBER.fullmatch(ans):  # the common GSM8K case: nothing to do
        return ans
    if len(ans) > 500:
        return _normalize(ans)
    return _normalize_cached(ans)


@functools.lru_cache(maxsize=1 << 16)
def _normalize_cached(ans: str) -> str:
    return _normalize(ans)


def _normalize(ans: str) -> str:
    s = strip_dollar_math(ans)
    s = s.replace("\n", " ").replace("\\displaystyle", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\cfrac", "\\frac")
    s = _BRACED_COMMA.sub(",", s)  # `32{,}349`, `14 {, }916`
    s = _LEFT_RIGHT.sub("", s)
    s = _SPACING.sub("", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = _DEGREES.sub("", s)
    s = _unwrap_text(s)
    s = _LE.sub(r"\\le ", s)
    s = _GE.sub(r"\\ge ", s)
    s = _NE.sub(r"\\ne ", s)
    s = _LT_GT.sub(lambda m: "<" if m.group(1) == "lt" else ">", s)
    s = s.replace("−", "-").replace("∞", "\\infty")
    s = _REALS.sub(lambda m: "(-\\infty,\\infty)", s)
    s = s.rstrip(".").strip()
    m = _CHOICE_THEN_VALUE.match(s)  # `\\text{(C) }12` -> `C`
    if m:
        s = m.group(1)
    m = _TRAILING_UNIT.match(s)
    if m:
        s = m.group(1)
    m = _NUMBER_THEN_WORDS.match(s)  # "18 eggs" -> "18" (not "2 and 3")
    if m and not re.search(r"\b(and|or|to)\b", m.group(2)):
        s = m.group(1)
    if re.search(r"[\d\\=<>]", s):  # math joined by words: "1 or 2", "x<1 \\text{ or } x>2"
        s = _OR_AND.sub(_or_and, s)
    s = _IN_SET.sub("", s)  # "x \\in [2,5)" -> "[2,5)"
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_FIRST_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = _GLUED_CMD.sub(_unglue, s)
    s = _CMD_SPACE.sub("\\1\x00", s)  # keep `\\pi r` from becoming the unknown `\\pir`
    s = re.sub(r"\s+", "", s).replace("\x00", " ")
    s = _SUB_BRACES.sub(r"_\1", s)  # `4210_{5}` -> `4210_5`
    s = _GROUPED_IN_BRACES.sub(lambda m: "{" + m.group(1).replace(",", "") + "}", s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    if s.startswith("{") and s.endswith("}") and balanced(s[1:-1]):
        s = s[1:-1]
    m = _CHOICE.match(s)  # `\\text{(C)}` -> `C`
    if m:
        s = m.group(1)
    s = re.sub(r"(?<=\d)\.0+(?!\d)", "", s) if _NUMBER.match(s) else s
    if s.startswith("+") and _NUMBER.match(s):
        s = s[1:]
    return s


def _dec(s: str) -> Fraction:
    return Fraction(s)  # exact: Fraction("0.333") == 333/1000


def parse_number(s: str) -> Optional[Fraction]:
    """An exact rational for plain numbers, `a/b`, `\\frac{a}{b}`, mixed numbers, `a\\times10^k`."""
    if not s:
        return None
    try:
        if _NUMBER.match(s):
            return _dec(s)
        m = _SIMPLE_FRAC.match(s)
        if m:
            val = _dec(m.group(2)) / _dec(m.group(3))
            return -val if m.group(1) == "-" else val
        m = _SLASH_FRAC.match(s)
        if m:
            return _dec(m.group(1)) / _dec(m.group(2))
        m = _MIXED_NUMBER.match(s)
        if m:
            val = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
            return -val if m.group(1) else val
        m = _SCI.match(s)
        if m and abs(int(m.group(2))) < 400:
            return _dec(m.group(1)) * Fraction(10) ** int(m.group(2))
    except (ValueError, ZeroDivisionError):
        return None
    return None


def significant_digits(s: str) -> int:
    """Digits in a decimal literal (used to recognise printed floats like 3.3333333333333335)."""
    digits = re.sub(r"[^\d]", "", s.split("e")[0].split("E")[0]).lstrip("0")
    return len(digits)


def numbers_equal(a: str, b: str, fa: Fraction, fb: Fraction) -> bool:
    """Exact equality, except that a float printed with >= 12 significant digits may differ from
    the exact value by float rounding (relative 1e-9): `3.3333333333333335` == `10/3`, but
    `0.333` != `1/3` and `100000` != `100001`."""
    if fa == fb:
        return True
    if max(significant_digits(a), significant_digits(b)) >= 12:
        scale = max(abs(fa), abs(fb))
        return abs(fa - fb) <= Fraction(1, 10**9) * scale
    return False
