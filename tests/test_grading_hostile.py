"""Hostile answers against the grader, as this user (root in CI) and as an unprivileged user
(`setpriv` to nobody): code that would write files, import, escape through dunders, lambdas and
attributes; number bombs (`9**9**9**9`, `10^{10^{10}}`, factorials, binomials); 10,000-deep
nesting, a 1 MB answer, NUL bytes, invalid UTF-8 and right-to-left marks. Each is graded within
the time limit with a verdict and a reason; afterwards the host is checked from outside: no file
with the attack's tag anywhere it could write, and no process left behind.

Run one batch by hand: `python -m tests.test_grading_hostile TAG`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from jz3.eval.mathtree import MathParseError, parse_math

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534
LIMIT_S = 20.0  # per answer: one symbolic timeout (5 s) plus a jail start at most


def attacks(tag: str) -> List[Tuple[str, str, str]]:
    """(name, model output, gold). `tag` names every file an attack tries to create."""
    path = f"/tmp/{tag}"
    chars = "+".join(f"chr({ord(c)})" for c in path)
    code = {
        "open_write": f"open({chars},chr(119)).write(chr(49))",
        "open_write_plain": f"open('{path}', 'w').write('1')",
        "import_os": f"__import__('os').system('touch {path}')",
        "import_stmt": f"import os; os.system('touch {path}')",
        "dunder_mro": "().__class__.__mro__[1].__subclasses__()",
        "dunder_globals": "(lambda: 0).__globals__['__builtins__']['exec']('1')",
        "lambda": f"(lambda f: f('{path}', 'w').write('1'))(open)",
        "attribute": "x.__class__.__base__.__subclasses__()[0]",
        "eval_call": f"eval(\"open('{path}','w')\")",
        "exec_call": f"exec(\"open('{path}','w')\")",
        "sympify_call": f"S(\"open('{path}','w')\")",
        "getattr": f"getattr(__builtins__, 'open')('{path}', 'w')",
    }
    out = []
    for name, c in code.items():
        out.append((name + "_boxed", f"The answer is $\\boxed{{{c}}}$.", "x+1"))
        out.append((name + "_sentence", f"So the final answer is {c}", "2"))
    bombs = {
        "pow_python": "9**9**9**9", "pow_latex": "10^{10^{10}}", "pow_tower": "9^{9^{9^{9}}}",
        "pow_symbolic": "x^{10^{10}}", "pow_root": "2^{\\sqrt{2}\\cdot 10^{9}}",
        "factorial": "(10^{6})!", "factorial_chain": "99!!!!", "factorial_big": "123456789!",
        "binom": "\\binom{10^{6}}{5\\cdot 10^{5}}", "binom_big": "\\dbinom{99999999}{4444444}",
        "exp": "e^{e^{e^{e^{99}}}}", "deep_frac": "\\frac{1}{" * 300 + "2" + "}" * 300,
    }
    for name, b in bombs.items():
        out.append((name, f"Therefore $\\boxed{{{b}}}$", "x+1"))
        out.append((name + "_vs_number", f"Therefore $\\boxed{{{b}}}$", "5"))
    out += [
        ("nesting_braces", "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", "1+x"),
        ("nesting_parens", "\\boxed{" + "(" * 10_000 + "x" + ")" * 10_000 + "}", "x+1"),
        ("nesting_sqrt", "\\boxed{" + "\\sqrt{" * 10_000 + "2" + "}" * 10_000 + "}", "2"),
        ("one_megabyte", "\\boxed{" + "x+" * 500_000 + "1}", "x+1"),
        ("one_megabyte_text", "7 " * 500_000, "8"),
        ("nul_bytes", "The answer is $\\boxed{1\x002}$ \x00\x00", "12"),
        ("invalid_utf8", b"\\boxed{\xff\xfe\xc3(x+1}".decode("utf-8", "surrogateescape"), "x+1"),
        ("invalid_utf8_replaced", b"\\boxed{\xff\xfe2}".decode("utf-8", "replace"), "2"),
        ("rtl_mark", "The answer is $\\boxed{\u202e1+x\u202c}$", "x+1"),
        ("rtl_isolate", "\\boxed{\u2067x\u2069+1}", "x+1"),
        ("zero_width", "\\boxed{x\u200b+1}", "x+1"),
    ]
    return out


def run_batch(tag: str) -> Dict[str, Dict]:
    """Grade every attack here (the test runs this in-process, and as nobody in a child)."""
    from jz3.eval.forkserver import POOL
    from jz3.eval.grading import grade
    from jz3.eval.symbolic import default_checker

    results = {}
    for name, output, gold in attacks(tag):
        t0 = time.monotonic()
        v = grade(output, gold, "math-oai")
        results[name] = {"correct": v.correct, "reason": v.reason,
                         "seconds": time.monotonic() - t0}
    results["_jailed"] = default_checker().jailed
    default_checker().close()
    POOL.close()
    return results


def _descendants(pid: int) -> List[int]:
    kids = {}
    for st in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = st.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(fields[1]), []).append(int(st.parent.name))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def _check(results: Dict, tag: str) -> None:
    for name, _, _ in attacks(tag):
        r = results[name]
        assert r["correct"] is False, (name, r)
        assert r["reason"], (name, r)
        assert r["seconds"] < LIMIT_S, (name, r)
    for d in ("/tmp", "/dev/shm", str(ROOT), str(Path.home()), "/"):
        assert not list(Path(d).glob(f"*{tag}*")), d
    if shutil.which("bwrap"):  # the symbolic step ran behind the second wall
        assert results["_jailed"] is True


def test_parser_refuses_what_no_answer_needs():
    for text in ("().__class__", "lambda: 1", "open('/x','w')", "a.b", "x[0]", "f'{x}'",
                 "1\x002", "\u202e1", "{" * 100 + "1" + "}" * 100, "1" * 5000):
        with pytest.raises(MathParseError):
            parse_math(text)
    assert parse_math("9**9**9**9")[0] == "^"  # parsed to data; the builder refuses its value


def test_tool_verification_compares_without_evaluating(tmp_path):
    """The filter stage compares a program's printout with the stated answer through the same
    grader: a hostile printout or answer is a mismatch, and nothing is executed on the host."""
    from jz3.synth.tool_verify import printed_matches

    target = tmp_path / "pwned"
    payload = f"open({str(target)!r}, 'w').write('1')"
    assert not printed_matches(payload, "x+1")
    assert not printed_matches("2", payload)
    assert not printed_matches("__import__('os').system('touch " + str(target) + "')", "2")
    assert printed_matches("0.5\n", "\\frac{1}{2}")
    assert not target.exists()


@pytest.mark.slow
def test_hostile_answers_as_this_user():
    tag = f"jz3hostile{uuid.uuid4().hex[:8]}"
    before = set(_descendants(os.getpid()))
    results = run_batch(tag)
    _check(results, tag)
    left = [p for p in _descendants(os.getpid()) if p not in before]
    assert left == [], left
    # the jail's refusals come back as reasons, not crashes
    assert "too large" in results["pow_latex"]["reason"] or "too large" in \
        results["pow_latex_vs_number"]["reason"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to drop to an unprivileged user")
@pytest.mark.slow
def test_hostile_answers_as_an_unprivileged_user(tmp_path):
    tag = f"jz3hostile{uuid.uuid4().hex[:8]}"
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
           sys.executable, "-m", "tests.test_grading_hostile", tag]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                              "HOME": str(home), "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    _check(results, tag)
    assert not list(home.iterdir())
    assert results["_left"] == []  # the child saw none of its own processes left
    ps = subprocess.run(["ps", "-ww", "-eo", "user,args"], capture_output=True, text=True).stdout
    assert not [ln for ln in ps.splitlines() if ln.startswith("nobody") and "jz3-symbolic" in ln]


if __name__ == "__main__":
    res = run_batch(sys.argv[1])
    time.sleep(0.5)  # the jail's processes are reaped asynchronously
    res["_left"] = _descendants(os.getpid())
    print(json.dumps(res))
