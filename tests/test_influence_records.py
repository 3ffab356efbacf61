"""Influence inputs without a model: candidate lines (rejected line numbers, counts that add
up), target subtasks (GSM8K + MATH), the truncation that keeps the problem, epoch boundaries."""

import json

import pytest

from jz3.data.records import RecordError
from jz3.influence.examples import Encoder, Example, dataset_name, load_targets
from jz3.influence.run import load_candidates
from jz3.influence.warmup import epoch_bounds


def test_rejected_candidates_name_their_real_file_line_and_counts_add_up(tmp_path):
    f = tmp_path / "cands.jsonl"
    lines = [
        json.dumps({"id": "a", "prompt": "p", "completion": "c"}),  # 1
        "",  # 2: blank, not a record
        "{not json",  # 3
        json.dumps({"id": "b", "note": "no text"}),  # 4: unusable
        json.dumps({"id": "a", "prompt": "p2", "completion": "c2"}),  # 5: duplicate id
        json.dumps([1, 2]),  # 6: not an object
        json.dumps({"id": "c", "text": "snippet"}),  # 7
    ]
    f.write_text("\n".join(lines) + "\n")
    ex, counts = load_candidates(f, tmp_path / "rejected.jsonl")
    assert [e.id for e in ex] == ["a", "c"]
    rej = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rej] == [3, 4, 5, 6]
    assert rej[2]["field"] == "id" and "first at" in rej[2]["reason"]
    assert counts.read == 6 and counts.used == 2 and counts.rejected == 4
    assert counts.read == counts.used + counts.rejected
    assert sum(counts.reasons.values()) == counts.rejected
    assert not counts.beyond_limit
    ex, counts = load_candidates(f, tmp_path / "rejected.jsonl", limit=1)
    assert [e.id for e in ex] == ["a"] and counts.beyond_limit and counts.read == 1


def test_targets_are_gsm8k_and_math_subtasks(shared_data, tmp_path):
    gsm = shared_data / "gsm8k" / "train.jsonl"
    math = shared_data / "math_train" / "train.jsonl"
    assert dataset_name(gsm) == "gsm8k" and dataset_name(math) == "math_train"
    t = load_targets([gsm, math], limit=3)
    assert [e.subtask for e in t] == ["gsm8k"] * 3 + ["math_train"] * 3
    first_math = json.loads(math.open().readline())
    assert t[3].input.startswith("## Question\n" + first_math["problem"][:20])
    assert t[3].output == first_math["solution"]
    named = load_targets([gsm, math], names=["g", "m"], limit=1)
    assert [e.subtask for e in named] == ["g", "m"]
    other = tmp_path / "gsm8k" / "train.jsonl"
    other.parent.mkdir()
    other.write_text(gsm.open().readline())
    with pytest.raises(ValueError, match="target_names"):
        load_targets([gsm, other])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n\n{"nope": 1}\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:3"):
        load_targets([bad])


class CharTok:
    """One token per character (ids = code points), enough to check the truncation."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def decode(ids, mask, want):
    return "".join(chr(i) for i, m in zip(ids, mask, strict=True) if m == want and i > 2)


def test_truncation_keeps_the_prompt_and_the_problem_head():
    enc = Encoder(CharTok(), max_len=40)
    ex = Example("x", "PROMPT:", "Problem: add 2 and 3. Solution: " + "step " * 20)
    ids, mask = enc.encode(ex)
    assert len(ids) == 40 and ids[0] == 1
    assert decode(ids, mask, 0) == "PROMPT:"
    assert decode(ids, mask, 1).startswith("Problem: add 2 and 3.")
    short = Example("y", "P", "short")
    ids, mask = enc.encode(short)
    assert decode(ids, mask, 1) == "short" and ids[-1] == 2  # eos kept when it fits
    long_prompt = Example("z", "Q" * 100, "answer " * 10)
    ids, mask = enc.encode(long_prompt)
    assert len(ids) == 40 and sum(mask) == 39 // 2  # half the window (after bos) for output
    assert decode(ids, mask, 1).startswith("answer answer")


def test_epoch_bounds_give_every_epoch_a_checkpoint():
    assert epoch_bounds(8, 4) == {2: [1], 4: [2], 6: [3], 8: [4]}
    assert epoch_bounds(5, 4) == {1: [1], 2: [2], 4: [3], 5: [4]}
    # fewer steps than epochs (the old dict collided here and lost checkpoints)
    assert epoch_bounds(2, 4) == {1: [1, 2], 2: [3, 4]}
    assert epoch_bounds(3, 4) == {1: [1], 2: [2, 3], 3: [4]}
    assert sorted(e for es in epoch_bounds(7, 6).values() for e in es) == list(range(1, 7))
    with pytest.raises(ValueError):
        epoch_bounds(0, 4)


def test_influence_defaults_are_less_and_the_paper_targets():
    from jz3.config.influence import InfluenceConfig

    ic = InfluenceConfig()
    assert (ic.lora.r, ic.lora.alpha, ic.lora.dropout) == (128, 512, 0.1)
    assert ic.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert ic.warmup_fraction == 0.05 and ic.max_len == 2048 and ic.proj_dim == 8192
    assert ic.top_p == 0.1 and not hasattr(ic, "warmup_lr")  # the stage's trainer.lr
    assert [t.split(":", 1)[1].split("/")[0] for t in ic.targets] == ["gsm8k", "math_train"]
