"""Tool data: programs run in the evaluation sandbox; only matching printed answers survive."""

from __future__ import annotations

from jz3.config.eval import SandboxConfig
from jz3.synth.tool_verify import ToolVerifier, printed_matches


def _rec(rid, code, answer):
    sol = f"```python\n{code}\n```\nThe answer is $\\boxed{{{answer}}}$."
    return {"id": rid, "prompt_type": "tool", "problem": "p", "solution": sol, "answer": answer}


CORRECT = "def area(r):\n    return 3 * r * r\n\nprint(area(4))"
WRONG = "print(sum(range(10)))"  # prints 45
HANGING = "while True:\n    pass"


def test_keeps_correct_rejects_wrong_and_hanging():
    recs = [_rec("ok", CORRECT, "48"), _rec("wrong", WRONG, "55"), _rec("hang", HANGING, "1"),
            _rec("crash", "print(1/0)", "0"), {**_rec("nocode", "", "1"), "solution": "no code"}]
    with ToolVerifier(SandboxConfig(), timeout_s=2.0, workers=2) as v:
        reasons = dict(zip([r["id"] for r in recs], v.verify(recs), strict=True))
    assert reasons["ok"] is None
    assert reasons["wrong"].startswith("tool_mismatch") and "'45'" in reasons["wrong"]
    assert reasons["hang"].startswith(("tool_timeout", "tool_error"))
    assert "time" in reasons["hang"]
    assert reasons["crash"].startswith("tool_error") and "ZeroDivisionError" in reasons["crash"]
    assert reasons["nocode"].startswith("tool_no_code")


def test_printed_answer_matching():
    assert printed_matches("48\n", "48")
    assert printed_matches("The area is 48.0\n", "48")
    assert printed_matches("0.3333333333333333\n", "\\frac{1}{3}")
    assert printed_matches("[1, 9]\n", "1, 9")
    assert not printed_matches("47\n", "48")
    assert not printed_matches("", "48")


def test_programs_ending_in_a_call_are_not_echoed():
    """`sys.stdout.write` returns a count and `main()` returns None: a correct program that ends
    in either must still verify (no echo of a trailing expression)."""
    recs = [_rec("write", "import sys\nsys.stdout.write('42\\n')", "42"),
            _rec("main", "def main():\n    print(48)\n\nmain()", "48")]
    with ToolVerifier(SandboxConfig(), timeout_s=5.0, workers=2) as v:
        assert v.verify(recs) == [None, None]


def test_hostile_program_cannot_pass_by_forging_output_or_escaping(tmp_path):
    """A program that tries to escape is rejected or contained; its printed text cannot make
    the harness call it verified unless it really prints the answer."""
    target = tmp_path / "evil.txt"
    recs = [_rec("escape", f"open({str(target)!r}, 'w').write('x')\nprint(48)", "48"),
            _rec("forge", "import os, sys\nprint(48)\nsys.stdout.flush()\nos._exit(3)", "48")]
    with ToolVerifier(SandboxConfig(), timeout_s=5.0, workers=2) as v:
        reasons = v.verify(recs)
    assert reasons[0].startswith("tool_error") and not target.exists()
    assert reasons[1].startswith("tool_error")  # printed the answer, but exited 3
