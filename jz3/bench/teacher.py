"""Teacher client throughput: `python -m jz3.bench.teacher`.

Starts the chat-completions test server (`tests/openai_server.py`) in its own process, answering
every request after `--latency` seconds, and sends `--requests` distinct prompts through the
full client path (`TeacherRunner`: SQLite journal, budget reservations, `openai` AsyncOpenAI) at
`--concurrency`. Prints a JSON object last: `requests_per_s`, `ideal_requests_per_s`
(= concurrency / latency) and `efficiency` (their ratio; target >= 0.8), plus the client's CPU
time per request and the machine's load (the server runs on the same machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jz3.config.enums import JournalSync
from jz3.config.teacher import BudgetConfig, TeacherConfig
from jz3.paths import PROJECT_ROOT
from jz3.teacher.dispatch import TeacherRunner, sampling_params
from jz3.teacher.journal import Journal, request_key
from jz3.teacher.openai_client import OpenAIBackend
from jz3.teacher.types import OutcomeStatus, TeacherRequest


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    script = PROJECT_ROOT / "tests" / "openai_server.py"
    proc = subprocess.Popen([sys.executable, str(script), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"test server did not start: {line!r}")
    return proc, line.split(" ", 1)[1]


def run(requests: int, concurrency: int, latency: float, sync: JournalSync,
        aiohttp_transport: bool = True) -> dict:
    proc, url = start_server(latency)
    try:
        cfg = TeacherConfig(base_url=url, model="bench-teacher", concurrency=concurrency,
                            timeout_s=30.0, max_tokens=128, journal_sync=sync,
                            aiohttp_transport=aiohttp_transport,
                            budget=BudgetConfig(max_calls=10 * requests))
        params = sampling_params(cfg)
        prompts = [f"Bench prompt {i}: write one problem about {i} apples." for i in range(requests)]
        reqs = [TeacherRequest(request_key(cfg.model, p, params), p, "grade_school") for p in prompts]
        with tempfile.TemporaryDirectory() as d, Journal(Path(d) / "j.sqlite", sync) as journal:
            # warm-up: open the connection pool (not timed)
            warm = [TeacherRequest(request_key(cfg.model, f"warm {i}", params), f"warm {i}",
                                   "grade_school") for i in range(concurrency)]
            asyncio.run(TeacherRunner(OpenAIBackend(cfg), journal, cfg).run(warm, progress=False))
            runner = TeacherRunner(OpenAIBackend(cfg), journal, cfg)
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            outs = asyncio.run(runner.run(reqs, progress=False))
            wall = time.perf_counter() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        ok = sum(o.status == OutcomeStatus.ok for o in outs)
    finally:
        proc.terminate()
        proc.wait(10)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = kids.ru_utime + kids.ru_stime  # whole server life, warm-up included
    rps = requests / wall
    ideal = concurrency / latency
    return {"bench": "teacher", "requests": requests, "ok": ok, "concurrency": concurrency,
            "latency_s": latency, "journal_sync": sync.value,
            "transport": "aiohttp" if aiohttp_transport else "httpx", "wall_s": round(wall, 3),
            "requests_per_s": round(rps, 2), "ideal_requests_per_s": round(ideal, 2),
            "efficiency": round(rps / ideal, 4),
            "client_cpu_ms_per_request": round(1000 * cpu / requests, 3),
            "server_cpu_ms_per_request": round(1000 * server_cpu / requests, 3),
            "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
            "python": platform.python_version()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1600)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--journal-sync", choices=[s.value for s in JournalSync], default="normal")
    ap.add_argument("--httpx", action="store_true", help="httpx transport instead of aiohttp")
    a = ap.parse_args()
    print(json.dumps(run(a.requests, a.concurrency, a.latency, JournalSync(a.journal_sync),
                         aiohttp_transport=not a.httpx)))


if __name__ == "__main__":
    main()
