"""Booked vs billed after kills: `python tests/teacher_reliability.py` prints the table of
docs/TEACHER.md.

For a server that honours `Idempotency-Key` and one that ignores it (tests/openai_server.py,
which bills every completion it generates, also for a client that is gone), and for
`teacher.reconcile` strict and estimate: one uninterrupted run of N requests under a small $
cap, then the same requests against a fresh journal with `kills` kill -9s mid-run (each once
more answers are in and >= 4 attempts are in flight) and a final rerun. Reports answers,
booked $ (the journal) and billed $ (the server's own count).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from openai_server import ChatServer, FaultPlan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRICE_IN, PRICE_OUT = 10.0, 30.0

DRIVER = r"""
import dataclasses, json, sys
from jz3.config.enums import ReconcilePolicy, TeacherKind
from jz3.config.teacher import BudgetConfig, TeacherConfig
from jz3.teacher.journal import Journal, request_key
from jz3.teacher.openai_client import OpenAIBackend
from jz3.teacher.dispatch import TeacherRunner, sampling_params
from jz3.teacher.types import TeacherRequest

base_url, journal, policy, n, cap, pin, pout = sys.argv[1:8]
cfg = TeacherConfig(kind=TeacherKind.openai, base_url=base_url, model="teacher-x",
                    api_key="sk-test", concurrency=8, timeout_s=20.0, max_tokens=64,
                    backoff_base_s=0.02, backoff_max_s=0.2, reconcile=ReconcilePolicy(policy),
                    budget=BudgetConfig(max_calls=10**6, max_tokens=10**9,
                                        max_cost_usd=float(cap), price_input_per_1m=float(pin),
                                        price_output_per_1m=float(pout)))
params = sampling_params(cfg)
prompts = [f"Problem {i}: " + " ".join(f"w{j}" for j in range(300)) for i in range(int(n))]
reqs = [TeacherRequest(request_key(cfg.model, p, params), p, "cot") for p in prompts]
with Journal(journal) as j:
    runner = TeacherRunner(OpenAIBackend(cfg), j, cfg)
    outs = runner.run_sync(reqs, progress=False)
    print(json.dumps({"ok": sum(o.status.value == "ok" for o in outs),
                      "report": dataclasses.asdict(runner.report),
                      "journal": dataclasses.asdict(j.totals())}))
"""


def _count(journal: Path, where: str) -> int:
    if not journal.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(f"SELECT COUNT(*) FROM calls WHERE {where}").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _args(url: str, journal: Path, policy: str, n: int, cap: float) -> list:
    return [sys.executable, "-c", DRIVER, url, str(journal), policy, str(n), str(cap),
            str(PRICE_IN), str(PRICE_OUT)]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def drive(url: str, journal: Path, policy: str, n: int, cap: float) -> dict:
    out = subprocess.run(_args(url, journal, policy, n, cap), cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def kill_at(url: str, journal: Path, policy: str, n: int, cap: float, answered: int) -> int:
    proc = subprocess.Popen(_args(url, journal, policy, n, cap), cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while ((_count(journal, "status='ok'") < answered
            or _count(journal, "pending_tokens > 0") < 4)
           and proc.poll() is None and time.time() < deadline):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return _count(journal, "pending_tokens > 0")


def scenario(honour: bool, policy: str, n: int, cap: float, kills: int, latency: float,
             tmp: Path) -> dict:
    plan = FaultPlan(latency_s=latency, honour_keys=honour)
    with ChatServer(plan) as server:
        url = f"http://127.0.0.1:{server.port}/v1"
        clean = drive(url, tmp / f"clean-{honour}-{policy}.sqlite", policy, n, cap)
        time.sleep(latency + 0.2)
        clean_billed = server.billed_cost(PRICE_IN, PRICE_OUT)
    with ChatServer(plan) as server:
        url = f"http://127.0.0.1:{server.port}/v1"
        journal = tmp / f"killed-{honour}-{policy}.sqlite"
        in_flight = []
        for k in range(kills):
            in_flight.append(kill_at(url, journal, policy, n, cap,
                                     answered=(k + 1) * max(1, clean["ok"] // (kills + 2))))
        final = drive(url, journal, policy, n, cap)
        time.sleep(latency + 0.2)  # the killed runs' last generations are billed
        billed = server.billed_cost(PRICE_IN, PRICE_OUT)
        generated_twice = sum(1 for p, c in server.answered.items()
                              if c > 1 and p.startswith("Problem"))
    return {"server": "honours keys" if honour else "ignores keys", "policy": policy,
            "probe": final["report"]["idempotency"]["probe"],
            "clean_ok": clean["ok"], "clean_booked": clean["journal"]["cost"],
            "clean_billed": clean_billed, "killed_ok": _count(journal, "status='ok'"),
            "in_flight_at_kills": in_flight, "booked": final["journal"]["cost"],
            "billed": billed, "released": final["report"]["reconcile"].get("released", 0),
            "generated_twice": generated_twice}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--cap", type=float, default=0.25, help="max_cost_usd")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.3)
    ap.add_argument("--tmp", default="/tmp/jz3_teacher_reliability")
    a = ap.parse_args()
    tmp = Path(a.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    for f in tmp.glob("*.sqlite*"):
        f.unlink()
    rows = [scenario(h, p, a.n, a.cap, a.kills, a.latency, tmp)
            for h in (True, False) for p in ("strict", "estimate")]
    print(f"| server | reconcile | probe | uninterrupted: answers / booked / billed | "
          f"after {a.kills} kills: answers / booked / billed | released (last run) | generated twice |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['server']} | {r['policy']} | {r['probe']} | {r['clean_ok']} / "
              f"${r['clean_booked']:.5f} / ${r['clean_billed']:.5f} | {r['killed_ok']} / "
              f"${r['booked']:.5f} / ${r['billed']:.5f} | {r['released']} | "
              f"{r['generated_twice']} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
