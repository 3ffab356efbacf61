"""A small LaTeX / plain-math parser: answer text -> a parse tree of plain lists and strings.

No `eval`, `exec`, `compile`, `sympify` or `parse_expr`: the grammar below is the only way text
becomes structure, and the tree is data (JSON-serialisable) that `jz3.eval.sympy_build` maps to
sympy constructors. Limits keep hostile input cheap: at most `MAX_CHARS` characters,
`MAX_DEPTH` nested groups, `MAX_NODES` tree nodes, `MAX_DIGITS` digits per number; control
characters, NUL, bidi marks and anything outside the grammar are refused with a reason.

Grammar (implicit multiplication between adjacent factors, `^` right-associative):
    expr   := term (('+'|'-') term)*
    term   := unary (('*'|'/'|\\cdot|\\times|\\div|<juxtaposition>) unary)*
    unary  := ('-'|'+') unary | power
    power  := post (('^'|'**') (group | unary))?
    post   := atom '!'*
    atom   := number | letter[_sub] | \\greek | \\pi | \\infty | '(' expr ')' | '{' expr '}'
            | '[' expr ']' | '|' expr '|' | \\frac g g | \\sqrt[n]? g | \\binom g g
            | func ('^' g)? arg | \\log_b arg | \\lfloor expr \\rfloor | \\lceil expr \\rceil

Tree nodes: ["n", "3.5"] number, ["s", "x_1"] symbol, ["c", "pi"|"oo"], ["+", a, b, ...],
["*", a, b, ...], ["/", a, b], ["neg", a], ["^", a, b], ["!", a], ["f", name, a],
["log", a, base|None], ["root", a, n|None], ["binom", n, k], ["abs", a], ["floor", a],
["ceil", a].
"""

from __future__ import annotations

import cmath
import math
import re
from fractions import Fraction
from typing import Dict, List, Optional, Tuple

MAX_CHARS = 2000
MAX_DEPTH = 60
MAX_NODES = 800
MAX_DIGITS = 200

FUNCS = ("arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "sin", "cos", "tan", "cot",
         "sec", "csc", "exp")
_PLAIN_NAMES = FUNCS + ("sqrt", "log", "ln", "pi")
GREEK = frozenset("""alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa
lambda mu nu xi rho sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma
Upsilon Phi Psi Omega""".split())
_SKIP_CMDS = frozenset(("left", "right", "displaystyle", "limits", "mathrm", "mathit", "mathbf",
                        "operatorname", "text", "textrm", "mbox", "bigl", "bigr", "big", "Big"))
_TOKEN = re.compile(r"\\[a-zA-Z]+|\\.|[a-zA-Z]+|\d|\.|\*\*|\S")
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_SYMBOL = re.compile(r"[A-Za-z](?:_[A-Za-z0-9]{1,8})?|[A-Za-z]+")


class MathParseError(ValueError):
    """The text is not an expression this grammar reads (the message says why)."""


def check_text(s: str) -> None:
    """Refuse what no answer needs before any work is done on it."""
    if not isinstance(s, str):
        raise MathParseError("not a string")
    if len(s) > MAX_CHARS:
        raise MathParseError(f"longer than {MAX_CHARS} characters")
    bad = _FORBIDDEN.search(s)
    if bad:
        raise MathParseError(f"control or bidi character U+{ord(bad.group()):04X}")
    depth = best = 0
    for ch in s:
        if ch in "([{":
            depth += 1
            best = max(best, depth)
        elif ch in ")]}":
            depth -= 1
    if best > MAX_DEPTH:
        raise MathParseError(f"nested deeper than {MAX_DEPTH}")


class _Parser:
    def __init__(self, text: str):
        check_text(text)
        self.toks: List[str] = _TOKEN.findall(text)
        self.i = 0
        self.nodes = 0
        self.depth = 0
        self.in_abs = 0

    # ------------------------------------------------------------------ helpers
    def peek(self) -> Optional[str]:
        while self.i < len(self.toks) and self.toks[self.i][1:] in _SKIP_CMDS and \
                self.toks[self.i][0] == "\\":
            self._skip_cmd()
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _skip_cmd(self) -> None:
        """`\\left`, `\\right` vanish; `\\mathrm{e}` / `\\text{x}` keep their argument."""
        self.i += 1
        if self.toks[self.i - 1] in ("\\left", "\\right") and self.i < len(self.toks) \
                and self.toks[self.i] in (".", "\\{", "\\}"):
            self.i += 1  # `\\left.` / `\\right.`

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise MathParseError("unexpected end of expression")
        self.i += 1
        return tok

    def expect(self, tok: str) -> None:
        got = self.take()
        if got != tok:
            raise MathParseError(f"expected {tok!r}, found {got!r}")

    def node(self, *parts) -> list:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise MathParseError(f"more than {MAX_NODES} parse nodes")
        return list(parts)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise MathParseError(f"nested deeper than {MAX_DEPTH}")

    # ------------------------------------------------------------------ grammar
    def parse(self) -> list:
        tree = self.expr()
        tok = self.peek()
        if tok is not None:
            raise MathParseError(f"unexpected {tok!r}")
        return tree

    def expr(self) -> list:
        self.enter()
        terms = [self.term()]
        while self.peek() in ("+", "-"):
            op = self.take()
            t = self.term()
            terms.append(t if op == "+" else self.node("neg", t))
        self.depth -= 1
        return terms[0] if len(terms) == 1 else self.node("+", *terms)

    def _starts_atom(self, tok: Optional[str]) -> bool:
        if tok is None:
            return False
        if tok == "|":
            return self.in_abs == 0
        if tok in ("(", "{") or tok[0].isalnum() or tok == ".":
            return True
        if tok[0] == "\\" and tok[1:].isalpha():
            return tok[1:] not in ("cdot", "times", "div", "rfloor", "rceil", "ast")
        return False

    def term(self) -> list:
        factors = [self.unary()]
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times", "\\ast"):
                self.take()
                factors.append(self.unary())
            elif tok in ("/", "\\div"):
                self.take()
                den = self.unary()
                factors[-1] = self.node("/", factors[-1], den)
            elif self._starts_atom(tok):
                factors.append(self.power())
            else:
                break
        return factors[0] if len(factors) == 1 else self.node("*", *factors)

    def unary(self) -> list:
        tok = self.peek()
        if tok in ("-", "+"):
            self.take()
            self.enter()
            inner = self.unary()
            self.depth -= 1
            return self.node("neg", inner) if tok == "-" else inner
        return self.power()

    def power(self) -> list:
        base = self.post()
        if self.peek() in ("^", "**"):
            self.take()
            self.enter()
            exp = self.group() if self.peek() == "{" else self.unary()
            self.depth -= 1
            return self.node("^", base, exp)
        return base

    def post(self) -> list:
        a = self.atom()
        while self.peek() == "!":
            self.take()
            a = self.node("!", a)
        return a

    def group(self) -> list:
        """A `{...}` argument, or a single token (`\\frac12`, `\\sqrt2`, `\\frac\\pi2`)."""
        tok = self.peek()
        if tok == "{":
            self.take()
            inner = self.expr()
            self.expect("}")
            return inner
        if tok is not None and tok.isdigit():
            self.take()
            return self.node("n", tok)
        return self.atom()

    def number(self) -> list:
        digits = []
        while (tok := self.peek()) is not None and (tok.isdigit() or (tok == "." and "." not in
                                                                      digits)):
            digits.append(self.take())
        text = "".join(digits)
        if text == "." or len(text) > MAX_DIGITS:
            raise MathParseError(f"bad number {text[:20]!r}")
        return self.node("n", text)

    def letters(self, run: str) -> list:
        """A run of letters: a plain function/constant name, else one symbol per letter."""
        self.i += 1
        for name in sorted(_PLAIN_NAMES, key=len, reverse=True):
            if run.startswith(name) and (run == name or name != "pi"):
                rest = run[len(name):]
                if rest:
                    self.toks.insert(self.i, rest)
                if name == "pi":
                    return self.node("c", "pi")
                return self.function(name)
        if len(run) > 1:
            self.toks.insert(self.i, run[1:])
        return self.symbol(run[0])

    def symbol(self, name: str) -> list:
        if self.peek() == "_":
            self.take()
            tok = self.take()
            if tok == "{":
                sub = []
                while (t := self.take()) != "}":
                    sub.append(t)
                tok = "".join(sub)
            if not re.fullmatch(r"[A-Za-z0-9]{1,8}", tok):
                raise MathParseError(f"bad subscript {tok[:20]!r}")
            name = f"{name}_{tok}"
        if not _SYMBOL.fullmatch(name):
            raise MathParseError(f"bad symbol {name[:20]!r}")
        return self.node("s", name)

    def function(self, name: str) -> list:
        """`name`, then an optional `^k` (a power of the value) or `_b` (log base), then its
        argument: `(...)`, `{...}` or one power (`\\sin x`, `\\sin^2 x`, `\\log_2 8`)."""
        power = base = None
        for _ in range(2):
            if self.peek() == "^":
                self.take()
                power = self.group()
            elif self.peek() == "_" and name in ("log",):
                self.take()
                base = self.group()
        self.enter()
        tok = self.peek()
        if tok == "(":
            self.take()
            arg = self.expr()
            self.expect(")")
        elif tok == "{":
            arg = self.group()
        else:
            arg = self.power()
        self.depth -= 1
        if name == "sqrt":
            out = self.node("root", arg, None)
        elif name in ("log", "ln"):
            out = self.node("log", arg, base)
        else:
            out = self.node("f", name, arg)
        return self.node("^", out, power) if power is not None else out

    def atom(self) -> list:
        tok = self.peek()
        if tok is None:
            raise MathParseError("unexpected end of expression")
        if tok.isdigit() or tok == ".":
            return self.number()
        if tok[0].isalpha():
            return self.letters(tok)
        if tok in ("(", "[", "{"):
            self.take()
            inner = self.expr()
            self.expect({"(": ")", "[": "]", "{": "}"}[tok])
            return inner
        if tok == "|":
            self.take()
            self.in_abs += 1
            inner = self.expr()
            self.in_abs -= 1
            self.expect("|")
            return self.node("abs", inner)
        if tok[0] == "\\" and tok[1:].isalpha():
            return self.command(tok[1:])
        raise MathParseError(f"unexpected {tok!r}")

    def command(self, name: str) -> list:
        self.take()
        if name in ("frac", "dfrac", "tfrac", "cfrac"):
            num = self.group()
            return self.node("/", num, self.group())
        if name == "sqrt":
            n = None
            if self.peek() == "[":
                self.take()
                n = self.expr()
                self.expect("]")
            return self.node("root", self.group(), n)
        if name in ("binom", "dbinom", "tbinom"):
            n = self.group()
            return self.node("binom", n, self.group())
        if name == "pi":
            return self.node("c", "pi")
        if name == "infty":
            return self.node("c", "oo")
        if name in FUNCS or name in ("log", "ln", "lg"):
            return self.function("log" if name == "lg" else name)
        if name in ("lfloor", "lceil"):
            inner = self.expr()
            self.expect("\\rfloor" if name == "lfloor" else "\\rceil")
            return self.node("floor" if name == "lfloor" else "ceil", inner)
        if name in GREEK:
            return self.symbol(name)
        raise MathParseError(f"unsupported command \\{name}")


def parse_math(text: str) -> list:
    """The parse tree of one expression (raises `MathParseError` with the reason)."""
    return _Parser(text).parse()


def tree_size(tree) -> Tuple[int, int]:
    """(nodes, depth) of a tree: used to check a tree that arrives from elsewhere."""
    if not isinstance(tree, list):
        return 0, 0
    sizes = [tree_size(x) for x in tree[1:]]
    return 1 + sum(s[0] for s in sizes), 1 + max((s[1] for s in sizes), default=0)


# ----------------------------------------------------------------------------- numeric screen
class _NoValue(ValueError):
    """The tree has no finite numeric value here (or computing it would be unbounded)."""


_CFUNCS = {"sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "arcsin": cmath.asin,
           "arccos": cmath.acos, "arctan": cmath.atan, "sinh": cmath.sinh, "cosh": cmath.cosh,
           "tanh": cmath.tanh, "exp": cmath.exp}
_RECIPROCAL = {"cot": cmath.tan, "sec": cmath.cos, "csc": cmath.sin}


def _finite(v: complex) -> complex:
    if not (cmath.isfinite(v)):
        raise _NoValue("not finite")
    return v


def evaluate(tree, env: Dict[str, complex], depth: int = 0) -> complex:
    """The value of a tree in floating point (symbols from `env`), by a tree walk over `cmath`
    (no evaluation of text); raises ValueError where there is no finite value or computing it
    would be unbounded (huge powers, factorials)."""
    if depth > MAX_DEPTH + 20 or not isinstance(tree, list) or not tree:
        raise _NoValue("malformed")
    tag, args = tree[0], tree[1:]

    def sub(i: int) -> complex:
        return evaluate(args[i], env, depth + 1)

    try:
        if tag == "n":
            return complex(float(Fraction(args[0])))
        if tag == "s":
            return env[args[0]]
        if tag == "c":
            if args[0] == "pi":
                return complex(math.pi)
            raise _NoValue("infinity")
        if tag == "+":
            return _finite(sum((evaluate(a, env, depth + 1) for a in args), 0j))
        if tag == "*":
            out = 1 + 0j
            for a in args:
                out *= evaluate(a, env, depth + 1)
            return _finite(out)
        if tag == "neg":
            return -sub(0)
        if tag == "/":
            return _finite(sub(0) / sub(1))
        if tag == "^":
            base, exp = sub(0), sub(1)
            if abs(exp) > 1000:
                raise _NoValue("exponent too large")
            if exp.imag == 0 and exp.real == int(exp.real) and base != 0:
                return _finite(base ** int(exp.real))
            return _finite(base ** exp)
        if tag == "!":
            n = sub(0)
            if n.imag or n.real != int(n.real) or not 0 <= n.real <= 170:
                raise _NoValue("factorial")
            return complex(math.factorial(int(n.real)))
        if tag == "binom":
            n, k = sub(0), sub(1)
            if n.imag or k.imag or n.real != int(n.real) or k.real != int(k.real) \
                    or not 0 <= n.real <= 1000:
                raise _NoValue("binomial")
            return complex(math.comb(int(n.real), int(k.real)) if k.real >= 0 else 0)
        if tag == "f":
            if args[0] in _RECIPROCAL:
                return _finite(1 / _RECIPROCAL[args[0]](evaluate(args[1], env, depth + 1)))
            return _finite(_CFUNCS[args[0]](evaluate(args[1], env, depth + 1)))
        if tag == "log":
            a = sub(0)
            val = cmath.log(a)
            return _finite(val if args[1] is None else val / cmath.log(sub(1)))
        if tag == "root":
            a = sub(0)
            return _finite(cmath.sqrt(a) if args[1] is None else a ** (1 / sub(1)))
        if tag == "abs":
            return complex(abs(sub(0)))
        if tag in ("floor", "ceil"):
            v = sub(0)
            if v.imag:
                raise _NoValue("floor of a complex value")
            return complex(math.floor(v.real) if tag == "floor" else math.ceil(v.real))
    except (ArithmeticError, ValueError, TypeError, KeyError, IndexError) as e:
        raise _NoValue(str(e)) from e
    raise _NoValue(f"unknown node {tag!r}")


def symbols_of(tree, out: Optional[set] = None) -> set:
    """The symbol names in a tree."""
    out = set() if out is None else out
    if isinstance(tree, list) and tree:
        if tree[0] == "s":
            out.add(tree[1])
        else:
            for x in tree[1:]:
                symbols_of(x, out)
    return out


_POINTS = (0.7326, 1.2719, 0.4183)


def numerically_different(ta, tb, rel: float = 1e-6) -> bool:
    """True when the two trees take clearly different values at some sample point: proof
    enough that they are not equal. False means "no conclusion" (equal there, or no value)."""
    names = sorted(symbols_of(ta) | symbols_of(tb))
    if len(names) > 8:
        return False
    for k, base in enumerate(_POINTS):
        env = {n: complex(base + 0.1037 * i * (k + 1)) for i, n in enumerate(names)}
        try:
            va, vb = evaluate(ta, env), evaluate(tb, env)
        except ValueError:
            return False
        if abs(va - vb) > rel * max(1.0, abs(va), abs(vb)):
            return True
    return False


# ----------------------------------------------------------------------------- sets of reals
_INF = {"oo": math.inf}
_GRID = (-1000.0, -100.0, -10.0, -3.0, -1.0, -0.5, -0.123, 0.0, 0.377, 0.5, 1.0, 3.0, 10.0,
         100.0, 1000.0)


def _real(tree, env: Dict[str, complex]) -> float:
    if tree == ["c", "oo"]:
        return math.inf
    if tree == ["neg", ["c", "oo"]]:
        return -math.inf
    v = evaluate(tree, env)
    if abs(v.imag) > 1e-12 * max(1.0, abs(v.real)):
        raise _NoValue("not real")
    return v.real


def _near(a: float, b: float) -> bool:
    return a == b or (math.isfinite(a) and math.isfinite(b)
                      and abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b)))


def _holds(op: str, a: float, b: float) -> bool:
    if _near(a, b):
        return op in ("\\le", "\\ge", "=")
    return {"<": a < b, ">": a > b, "\\le": a < b, "\\ge": a > b, "=": False,
            "\\ne": True}[op]


def _member(piece, t: float, var: str) -> bool:
    kind = piece[0]
    if kind == "empty":
        return False
    if kind == "interval":
        lo, hi = _real(piece[1], {}), _real(piece[2], {})
        above = _holds(">" if piece[3] else "\\ge", t, lo)
        below = _holds("<" if piece[4] else "\\le", t, hi)
        return above and below
    if kind == "finite":
        return any(_near(t, _real(e, {})) for e in piece[1])
    if kind == "and":
        return all(_member(q, t, var) for q in piece[1])
    if kind == "rel":
        vals = [_real(e, {var: complex(t)}) for e in piece[1]]
        return all(_holds(op, vals[i], vals[i + 1]) for i, op in enumerate(piece[2]))
    raise _NoValue("unknown piece")


def _constants(pieces, out: List[float]) -> None:
    for p in pieces:
        kind = p[0]
        trees = (p[1:3] if kind == "interval" else p[1] if kind in ("finite", "rel") else [])
        if kind == "and":
            _constants(p[1], out)
        for tr in trees:
            if isinstance(tr, list) and not symbols_of(tr):
                try:
                    v = _real(tr, {})
                except ValueError:
                    continue
                if math.isfinite(v):
                    out.append(v)


def sets_numerically_different(a, b, var: str) -> bool:
    """True when some real number is (clearly) in one set and not the other: proof that two
    subsets of the reals (pieces as trees, jz3.eval.symbolic) differ. Sample points: a fixed
    grid, every constant of either side, and points just beside them. False = no conclusion."""
    consts: List[float] = []
    _constants(a, consts)
    _constants(b, consts)
    points = set(_GRID)
    for v in consts[:40]:
        for d in (0.0, 0.5, -0.5, 1e-3 * max(1.0, abs(v)), -1e-3 * max(1.0, abs(v))):
            points.add(v + d)
    for t in sorted(points):
        try:
            in_a = any(_member(p, t, var) for p in a)
            in_b = any(_member(p, t, var) for p in b)
        except (ValueError, TypeError, IndexError, KeyError):
            continue
        if in_a != in_b:
            return True
    return False
