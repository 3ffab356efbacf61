"""Parse trees (jz3.eval.mathtree) -> sympy expressions, and the symbolic comparisons on them.

Standard library + sympy only, no jz3 import: this file's text is loaded into the sandbox's
jailed fork server as the module `jz3_sympy_build` (jz3.eval.symbolic), so the comparisons run
inside the jail; without a jail it is the worker of a local helper process
(`python -m jz3.eval.sympy_build`). Input is data only (lists, strings, booleans); every node is
checked and built with sympy constructors - nothing is parsed or evaluated as code. Powers,
factorials and binomials whose value would be huge are refused before sympy computes them.

A message: {"op": "expr", "a": tree, "b": tree} | {"op": "eqn", "a": [l, r], "b": [l, r]} |
{"op": "ineq", "a": [l, op, r], "b": [l, op, r]} | {"op": "set", "a": pieces, "b": pieces,
"var": "x"}; the answer {"eq": bool, "err": str|None}.
"""

import json
import math
import re
import sys

MAX_POW_BITS = 20000  # a number power whose value needs more bits than this is refused
MAX_EXPONENT = 10000  # |integer exponent| on a symbolic base
MAX_FACTORIAL = 1000
MAX_BINOM = 5000
MAX_NODES = 2000
MAX_DEPTH = 80
_NUM = re.compile(r"\d{1,200}(?:\.\d{0,200})?|\.\d{1,200}")
_SYM = re.compile(r"[A-Za-z](?:_[A-Za-z0-9]{1,8})?|[A-Za-z]{2,12}")
_RELS = ("<", ">", "\\le", "\\ge", "\\ne", "=")


class BuildError(ValueError):
    """A tree that is malformed or whose value is too large to compute."""


def _sympy():
    import sympy

    return sympy


def _bits(r) -> float:
    """Bits of a rational's numerator and denominator."""
    return math.log2(abs(int(r.p)) + 1) + math.log2(abs(int(r.q)) + 1)


def _pow(base, exp):
    sp = _sympy()
    if exp.is_Number and not exp.is_Rational:
        raise BuildError("non-rational exponent")
    if exp.is_Rational:
        if exp.q > 1000:
            raise BuildError("root of too high an order")
        if base.is_Rational:
            if abs(exp) * _bits(base) > MAX_POW_BITS:
                raise BuildError("power too large to compute")
        elif abs(exp) > MAX_EXPONENT:
            raise BuildError("exponent too large")
    elif exp.is_number:  # `2^{\\sqrt{2}\\cdot 10^{4}}`: bounded by its numeric size
        try:
            size = float(abs(sp.N(exp, 15)))
        except (TypeError, ValueError, OverflowError) as e:
            raise BuildError("exponent too large") from e
        if not size < MAX_EXPONENT:
            raise BuildError("exponent too large")
    return sp.Pow(base, exp)


def _function(name, arg):
    sp = _sympy()
    table = {"sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "cot": sp.cot, "sec": sp.sec,
             "csc": sp.csc, "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan,
             "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "exp": sp.exp}
    if name not in table:
        raise BuildError(f"unknown function {name!r}")
    if name == "exp" and arg.is_Rational and abs(arg) > 10000:
        raise BuildError("exponent too large")
    return table[name](arg)


def build(tree, depth=0):
    """A sympy expression for a parse tree; raises BuildError for anything unexpected."""
    sp = _sympy()
    if depth > MAX_DEPTH:
        raise BuildError("tree too deep")
    if not isinstance(tree, list) or not tree or not isinstance(tree[0], str):
        raise BuildError("malformed tree")
    tag, args = tree[0], tree[1:]

    def sub(i):
        return build(args[i], depth + 1)

    if tag == "n":
        if len(args) != 1 or not isinstance(args[0], str) or not _NUM.fullmatch(args[0]):
            raise BuildError("malformed number")
        return sp.Rational(args[0])
    if tag == "s":
        if len(args) != 1 or not isinstance(args[0], str) or not _SYM.fullmatch(args[0]):
            raise BuildError("malformed symbol")
        return sp.Symbol(args[0])
    if tag == "c":
        if args == ["pi"]:
            return sp.pi
        if args == ["oo"]:
            return sp.oo
        raise BuildError("unknown constant")
    if tag in ("+", "*"):
        if not args:
            raise BuildError("empty sum/product")
        items = [build(a, depth + 1) for a in args]
        return sp.Add(*items) if tag == "+" else sp.Mul(*items)
    if tag == "neg" and len(args) == 1:
        return -sub(0)
    if tag == "/" and len(args) == 2:
        den = sub(1)
        if den == 0:
            raise BuildError("division by zero")
        return sp.Mul(sub(0), _pow(den, sp.Integer(-1)))
    if tag == "^" and len(args) == 2:
        return _pow(sub(0), sub(1))
    if tag == "!" and len(args) == 1:
        n = sub(0)
        if n.is_number:
            if not (n.is_Integer and 0 <= n <= MAX_FACTORIAL):
                raise BuildError("factorial of a large or non-integer number")
        return sp.factorial(n)
    if tag == "binom" and len(args) == 2:
        n, k = sub(0), sub(1)
        for v in (n, k):
            if v.is_number and not (v.is_Integer and abs(v) <= MAX_BINOM):
                raise BuildError("binomial of a large or non-integer number")
        return sp.binomial(n, k)
    if tag == "f" and len(args) == 2 and isinstance(args[0], str):
        return _function(args[0], build(args[1], depth + 1))
    if tag == "log" and len(args) == 2:
        a = sub(0)
        return sp.log(a) if args[1] is None else sp.log(a, sub(1))
    if tag == "root" and len(args) == 2:
        a = sub(0)
        if args[1] is None:
            return sp.sqrt(a)
        n = sub(1)
        if n == 0:
            raise BuildError("zeroth root")
        return _pow(a, _pow(n, sp.Integer(-1)))
    if tag == "abs" and len(args) == 1:
        return sp.Abs(sub(0))
    if tag == "floor" and len(args) == 1:
        return sp.floor(sub(0))
    if tag == "ceil" and len(args) == 1:
        return sp.ceiling(sub(0))
    raise BuildError(f"unknown node {tag!r}")


def _size(tree, depth=0):
    if depth > MAX_DEPTH:
        raise BuildError("tree too deep")
    if isinstance(tree, list):
        return 1 + sum(_size(x, depth + 1) for x in tree)
    if tree is None or isinstance(tree, (str, bool)):
        return 1
    raise BuildError("malformed message")


# ----------------------------------------------------------------------------- comparisons
def expressions_equal(ta, tb) -> bool:
    sp = _sympy()
    ea, eb = build(ta), build(tb)
    if ea.free_symbols != eb.free_symbols:
        return False
    diff = sp.simplify(ea - eb)
    if diff == 0:
        return True
    if not diff.free_symbols:
        val = sp.N(diff, 50)
        return bool(val.is_number and abs(val) < sp.Float("1e-40"))
    return False


def _constant_ratio(fa, fb, positive: bool) -> bool:
    """Is fa / fb a (positive) constant? fb not identically 0."""
    sp = _sympy()
    if fa == 0 or fb == 0:
        return False
    ratio = sp.cancel(sp.together(fa / fb))
    if ratio.free_symbols:
        ratio = sp.simplify(ratio)
    if ratio.free_symbols or ratio == 0 or not ratio.is_number:
        return False
    return bool(ratio > 0) if positive else True


def equations_equal(a, b) -> bool:
    """`L1 = R1` vs `L2 = R2`: L1 - R1 = c (L2 - R2), c a non-zero constant, same variables."""
    fa = build(a[0]) - build(a[1])
    fb = build(b[0]) - build(b[1])
    if fa.free_symbols != fb.free_symbols or not fa.free_symbols:
        return False
    return _constant_ratio(fa, fb, positive=False)


_STRICT = {"<": True, ">": True, "\\le": False, "\\ge": False}


def inequalities_equal(a, b) -> bool:
    """`L op R` vs `L' op' R'`: as `f > 0` / `f >= 0` (`\\ne`: `f != 0`), the same strictness
    and f = c f' with c > 0."""

    def canon(rel):
        if rel[1] not in _RELS:
            raise BuildError("unknown relation")
        lhs, op, rhs = build(rel[0]), rel[1], build(rel[2])
        if op in ("<", "\\le"):
            return rhs - lhs, op
        return lhs - rhs, op

    (fa, opa), (fb, opb) = canon(a), canon(b)
    if fa.free_symbols != fb.free_symbols:
        return False
    if "\\ne" in (opa, opb):
        return opa == opb and _constant_ratio(fa, fb, positive=False)
    if _STRICT.get(opa) != _STRICT.get(opb):
        return False
    return _constant_ratio(fa, fb, positive=True)


def _real_set(pieces, var):
    sp = _sympy()
    if not isinstance(var, str) or not _SYM.fullmatch(var):
        raise BuildError("bad variable")
    x = sp.Symbol(var)
    rel = {"<": sp.Lt, ">": sp.Gt, "\\le": sp.Le, "\\ge": sp.Ge, "=": sp.Eq, "\\ne": sp.Ne}

    def one(p):
        kind = p[0]
        if kind == "empty":
            return sp.S.EmptySet
        if kind == "interval":
            return sp.Interval(build(p[1]), build(p[2]), bool(p[3]), bool(p[4]))
        if kind == "finite":
            return sp.FiniteSet(*[build(e) for e in p[1]])
        if kind == "and":
            return sp.Intersection(*[one(q) for q in p[1]])
        if kind != "rel" or any(op not in rel for op in p[2]):
            raise BuildError("unknown set piece")
        exprs = [build(q) for q in p[1]]
        out = sp.S.Reals
        for i, op in enumerate(p[2]):
            cond = rel[op](exprs[i], exprs[i + 1])
            out = sp.Intersection(out, sp.solveset(cond, x, sp.S.Reals))
        return out

    return sp.Union(*[one(p) for p in pieces])


def sets_equal(a, b, var) -> bool:
    """Two subsets of the reals (pieces from jz3.eval.relations.parse_real_set, as trees)."""
    sp = _sympy()
    sa, sb = _real_set(a, var), _real_set(b, var)
    if sa == sb:
        return True
    return sp.simplify(sa.symmetric_difference(sb)) == sp.S.EmptySet


def check(msg) -> dict:
    """One comparison -> {"eq": bool, "err": None | "what failed"}; never raises."""
    try:
        if not isinstance(msg, dict) or _size(msg.get("a")) + _size(msg.get("b")) > MAX_NODES:
            raise BuildError("message too large or malformed")
        op = msg.get("op")
        if op == "expr":
            eq = expressions_equal(msg["a"], msg["b"])
        elif op == "eqn":
            eq = equations_equal(msg["a"], msg["b"])
        elif op == "ineq":
            eq = inequalities_equal(msg["a"], msg["b"])
        elif op == "set":
            eq = sets_equal(msg["a"], msg["b"], msg.get("var", "x"))
        else:
            raise BuildError(f"unknown op {op!r}")
        return {"eq": bool(eq), "err": None}
    except (Exception, RecursionError) as e:  # noqa: BLE001 - a failure means "not equal"
        return {"eq": False, "err": f"{type(e).__name__}: {e}"[:200]}


def main(text: str) -> None:
    """Entry point inside the jail: one JSON message in, one JSON answer printed."""
    sys.stdout.write(json.dumps(check(json.loads(text))) + "\n")
    sys.stdout.flush()


def _worker() -> None:  # pragma: no cover - the local helper process (no jail here)
    import os
    import resource

    mb = int(os.environ.get("JZ3_SYMBOLIC_MEMORY_MB", "2048"))
    resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
    sys.setrecursionlimit(3000)
    _sympy()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        main(line)


if __name__ == "__main__":
    _worker()
