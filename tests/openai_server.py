"""A chat-completions server on 127.0.0.1 that injects faults, for the teacher tests and bench.

`ChatServer(plan).start()` serves `POST /v1/chat/completions` (and `GET /stats`) from a
background thread; run `python tests/openai_server.py --latency 0.2` for a separate process
(prints `READY <base_url>`). Faults, drawn per request with probability `fault_rate`:
`rate_limit` (429 + Retry-After), `server_error` (500/503), `slow` (answers after `slow_s`,
past the client's timeout), `drop` (closes the connection without a response), `malformed`
(200 with a broken JSON body), `empty_choices` (200 with `choices: []`). Prompts containing
`POISON` always get a 400. The answer to a prompt is deterministic (`expected_answer`).

Counters: `answered[prompt]` = fresh 200 answers actually delivered for that prompt (the
"answered twice" check), `replays` = requests whose `Idempotency-Key` was already answered
(served from the server's cache, not generated or billed again), `billed_tokens`,
`early_retries` = requests that came back before a 429's Retry-After had passed.

Billing is on generation: a completion the server generated is billed even when its client is
gone (timed out, killed) before it is delivered. With `honour_keys` (the default) the server
keeps every generation under its `Idempotency-Key` and answers a later request with that key
from it (a request arriving while the key is being generated waits for it): a key is billed
once. With `honour_keys=False` every request generates and bills anew. Response ids are
unique per generation. `api_key` set: requests without `Authorization: Bearer <api_key>` get
401 `Incorrect API key`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from aiohttp import web

FAULTS = ("rate_limit", "server_error", "slow", "drop", "malformed", "empty_choices")


@dataclass
class FaultPlan:
    fault_rate: float = 0.0
    weights: Dict[str, float] = field(default_factory=lambda: {f: 1.0 for f in FAULTS})
    latency_s: float = 0.0
    slow_s: float = 1.0
    retry_after_s: float = 0.1
    seed: int = 0
    poison: str = "POISON"
    honour_keys: bool = True
    api_key: Optional[str] = None


def expected_answer(prompt: str) -> int:
    return int(hashlib.sha256(prompt.encode()).hexdigest()[:6], 16) % 1000


def completion_for(prompt: str, max_tokens: int) -> str:
    """A completion in the jz3 format whose answer depends on the prompt only."""
    n = expected_answer(prompt)
    tool = "Code Solution" in prompt
    if tool:
        body = (f"## Question\nCompute {n} + 0.\n\n## Code Solution\n```python\nprint({n} + 0)\n```\n"
                f"```output\n{n}\n```\nThe result is \\boxed{{{n}}}.")
    else:
        body = f"## Question\nWhat is {n} + 0?\n\n## Solution\nAdding zero changes nothing: \\boxed{{{n}}}."
    words = body.split(" ")
    return " ".join(words[:max_tokens])


class ChatServer:
    def __init__(self, plan: Optional[FaultPlan] = None):
        self.plan = plan or FaultPlan()
        self._rng = random.Random(self.plan.seed)
        self._lock = threading.Lock()
        self.answered: Counter = Counter()
        self.faults: Counter = Counter()
        self.requests = 0
        self.replays = 0
        self.billed_tokens = 0
        self.billed_prompt_tokens = 0
        self.billed_completion_tokens = 0
        self.unauthorized = 0
        self._gen_id = 0
        self._in_progress: Dict[str, asyncio.Future] = {}
        self.early_retries = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._by_key: Dict[str, Dict[str, Any]] = {}
        self._retry_not_before: Dict[str, float] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self.port = 0

    # ---------------------------------------------------------------- serving
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def stats(self) -> Dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "answered_prompts": len(self.answered),
                    "answered_total": sum(self.answered.values()),
                    "answered_twice": sum(1 for v in self.answered.values() if v > 1),
                    "replays": self.replays, "faults": dict(self.faults),
                    "billed_tokens": self.billed_tokens,
                    "billed_prompt_tokens": self.billed_prompt_tokens,
                    "billed_completion_tokens": self.billed_completion_tokens,
                    "unauthorized": self.unauthorized, "early_retries": self.early_retries,
                    "max_in_flight": self.max_in_flight}

    def billed_cost(self, input_per_1m: float, output_per_1m: float) -> float:
        return (self.billed_prompt_tokens * input_per_1m
                + self.billed_completion_tokens * output_per_1m) / 1e6

    def _bill(self, usage: Dict[str, int]) -> None:
        with self._lock:
            self.billed_tokens += usage["total_tokens"]
            self.billed_prompt_tokens += usage["prompt_tokens"]
            self.billed_completion_tokens += usage["completion_tokens"]

    def _draw(self, prompt: str) -> Optional[str]:
        if self.plan.poison in prompt:
            return "poison"
        with self._lock:
            if self._rng.random() >= self.plan.fault_rate:
                return None
            names = list(self.plan.weights)
            return self._rng.choices(names, weights=[self.plan.weights[n] for n in names])[0]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if self.plan.api_key and request.headers.get("Authorization") != f"Bearer {self.plan.api_key}":
            with self._lock:
                self.unauthorized += 1
            return web.json_response({"error": {"message": "Incorrect API key provided",
                                                "type": "invalid_request_error"}}, status=401)
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        max_tokens = int(body.get("max_tokens") or 256)
        idem = request.headers.get("Idempotency-Key") if self.plan.honour_keys else None
        now = time.monotonic()
        with self._lock:
            nb = self._retry_not_before.pop(idem or prompt, None)
            if nb is not None and now < nb - 0.005:
                self.early_retries += 1
        done: Optional[asyncio.Future] = None
        if idem:
            while True:
                with self._lock:
                    if idem in self._by_key:
                        self.replays += 1
                        return web.json_response(self._by_key[idem])
                    pending = self._in_progress.get(idem)
                    if pending is None:  # this request owns the key until it is done
                        done = asyncio.get_running_loop().create_future()
                        self._in_progress[idem] = done
                        break
                await asyncio.shield(pending)  # another request has this key: wait for it
        try:
            return await self._generate(request, body, prompt, max_tokens, idem)
        finally:
            if done is not None:
                with self._lock:
                    self._in_progress.pop(idem, None)
                done.set_result(None)

    async def _generate(self, request: web.Request, body: Dict[str, Any], prompt: str,
                        max_tokens: int, idem: Optional[str]) -> web.StreamResponse:
        if self.plan.latency_s:
            await asyncio.sleep(self.plan.latency_s)
        fault = self._draw(prompt)
        if fault is not None:
            with self._lock:
                self.faults[fault] += 1
        if fault == "poison":
            return web.json_response({"error": {"message": "prompt rejected", "type": "invalid_request_error"}},
                                     status=400)
        if fault == "rate_limit":
            with self._lock:
                self._retry_not_before[idem or prompt] = time.monotonic() + self.plan.retry_after_s
            return web.json_response({"error": {"message": "slow down"}}, status=429,
                                     headers={"Retry-After": f"{self.plan.retry_after_s:g}"})
        if fault == "server_error":
            return web.json_response({"error": {"message": "boom"}}, status=random.choice((500, 503)))
        if fault == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        completion = completion_for(prompt, max_tokens)
        usage = {"prompt_tokens": len(prompt.split()) + 8,
                 "completion_tokens": len(completion.split(" "))}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if fault == "malformed":
            self._bill(usage)
            return web.Response(text='{"id": "x", "choices": [{"message": {"content": "## Qu',
                                content_type="application/json")
        if fault == "empty_choices":
            self._bill(usage)
            return web.json_response({"id": "x", "object": "chat.completion", "choices": [],
                                      "usage": usage})
        if fault == "slow":
            await asyncio.sleep(self.plan.slow_s)
        with self._lock:
            self._gen_id += 1
            gen = self._gen_id
        payload = {
            "id": f"chatcmpl-{gen:08d}",
            "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": completion}}],
            "usage": usage,
        }
        # generated: billed, and kept under its key, whether or not the client still listens
        self._bill(usage)
        with self._lock:
            self.answered[prompt] += 1
            if idem:
                self._by_key[idem] = payload
        if request.transport is None or request.transport.is_closing():
            with self._lock:
                self.faults["undelivered"] += 1
            return web.Response(status=200)
        resp = web.json_response(payload)
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            with self._lock:
                self.faults["undelivered"] += 1
        return resp

    # ---------------------------------------------------------------- lifecycle
    def start(self, port: int = 0) -> str:
        """Serve from a daemon thread; returns the base_url (`http://127.0.0.1:PORT/v1`)."""
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self.app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", port, backlog=1024)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="chat-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("chat server did not start in 10 s")
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> ChatServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--slow", type=float, default=1.0)
    ap.add_argument("--retry-after", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ignore-keys", action="store_true", help="bill every request anew")
    a = ap.parse_args()
    server = ChatServer(FaultPlan(fault_rate=a.fault_rate, latency_s=a.latency, slow_s=a.slow,
                                  retry_after_s=a.retry_after, seed=a.seed,
                                  honour_keys=not a.ignore_keys))
    url = server.start(a.port)
    print(f"READY {url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        print(json.dumps(server.stats()), flush=True)
        server.stop()


if __name__ == "__main__":
    main()
