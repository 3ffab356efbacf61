"""One attempt against an OpenAI-compatible chat-completions endpoint (the `openai` package).

The SDK's own retries are off (`max_retries=0`); `jz3.teacher.dispatch` retries. The request goes
through the client's generic `post` (same auth, base_url, timeouts and error classes as
`chat.completions.create`, without its per-call param transform); the raw HTTP response is
read and checked here, so every way an attempt can go wrong becomes a
`TransientError` / `PermanentError` with a short reason (`http_429`, `http_503`, `timeout`,
`connect_failed: ConnectionRefusedError`, `connection_error: ServerDisconnectedError`,
`malformed_json`, `empty_choices`, `empty_content`, ...) and its billing class
(`jz3.teacher.types.Billing`): a connection that never opened (refused, DNS, TLS, connect or
pool timeout) was never sent; a timeout or drop after sending, or a broken body, is lost.
The HTTP libraries' per-request log lines are kept at WARNING unless jz3 logs at DEBUG.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
from typing import Any, Dict, Mapping, Optional

import httpx
import openai

from jz3.config.enums import IdempotencyMode
from jz3.config.teacher import TeacherConfig
from jz3.teacher.types import (
    Billing,
    PermanentError,
    TeacherRequest,
    TeacherResponse,
    TransientError,
)

RETRYABLE_STATUS = {408, 409, 425, 429}
FATAL_STATUS = {401, 403, 404}  # wrong key, no permission, wrong model or URL: every request
# root causes that mean the request never left the client (nothing to bill)
_NEVER_SENT = ("ClientConnectorError", "ClientConnectorDNSError", "ClientConnectorSSLError",
               "ClientConnectorCertificateError", "ConnectionTimeoutError",
               "ConnectionRefusedError", "gaierror", "SSLError", "SSLCertVerificationError",
               "PoolTimeout")
_HTTP_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "aiohttp.client")


def parse_retry_after(headers: Mapping[str, str]) -> Optional[float]:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAIBackend:
    billable = True

    def __init__(self, cfg: TeacherConfig):
        if not cfg.base_url:
            raise ValueError("teacher.base_url is required for teacher.kind=openai")
        key = cfg.api_key or os.environ.get(cfg.api_key_env) or "EMPTY"  # vLLM needs none
        self.name = cfg.model
        self.base_url = cfg.base_url
        quiet_http_loggers()
        self.send_idempotency_key = IdempotencyMode(cfg.idempotency) != IdempotencyMode.none
        # The httpx connection pool scans every connection per request (quadratic at high
        # concurrency); openai's aiohttp transport keeps the client near 1 ms of CPU per call.
        http = (openai.DefaultAioHttpClient(timeout=cfg.timeout_s) if cfg.aiohttp_transport
                else openai.DefaultAsyncHttpxClient(timeout=cfg.timeout_s))
        self.client = openai.AsyncOpenAI(base_url=cfg.base_url, api_key=key, max_retries=0,
                                         timeout=cfg.timeout_s, http_client=http)

    async def aclose(self) -> None:
        await self.client.close()

    async def send(self, req: TeacherRequest, params: Dict[str, Any],
                   timeout_s: float) -> TeacherResponse:
        headers = {"Idempotency-Key": req.key} if self.send_idempotency_key else {}
        payload = {"model": self.name, "messages": [{"role": "user", "content": req.prompt}],
                   "temperature": params["temperature"], "top_p": params["top_p"],
                   "max_tokens": params["max_tokens"]}
        if params.get("stop"):
            payload["stop"] = list(params["stop"])
        try:
            # The client's generic `post` (the SDK's way to send a raw body): the typed
            # `chat.completions.create` spends ~3 ms of CPU per call transforming its params.
            resp = await self.client.post("/chat/completions", cast_to=httpx.Response,
                                          body=payload,
                                          options={"headers": headers, "timeout": timeout_s})
            body = resp.text
        except openai.APIConnectionError as e:  # APITimeoutError included
            reason, billing = classify_connection_error(e)
            raise TransientError(reason, billing=billing,
                                 fatal=billing == Billing.never_sent) from None
        except openai.APIStatusError as e:
            code = e.status_code
            if code in RETRYABLE_STATUS or code >= 500:
                raise TransientError(f"http_{code}",
                                     retry_after=parse_retry_after(e.response.headers)) from None
            msg = re.sub(r"^Error code: \d+ - ", "", str(e.message))[:200]
            raise PermanentError(f"http_{code}: {msg}",
                                 fatal=code in FATAL_STATUS) from None
        return _parse_body(body)


def quiet_http_loggers() -> None:
    """Per-request lines of the HTTP libraries only when jz3 itself logs at DEBUG."""
    import logging

    if not logging.getLogger("jz3").isEnabledFor(logging.DEBUG):
        for name in _HTTP_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def _chain(e: BaseException) -> list:
    names, cur = [], e
    while cur is not None and len(names) < 12:
        names.append(type(cur).__name__)
        cur = cur.__cause__ or cur.__context__
    return names


def classify_connection_error(e: BaseException) -> tuple[str, Billing]:
    """(reason, billing class) of a transport failure from its cause chain (the aiohttp
    transport reports both a refused connection and a dropped one as a connect timeout, so
    only the root causes decide). Never sent: `connect_failed: <cause>`; else lost:
    `connection_error: <cause>` (dropped) or `timeout` (no answer in time)."""
    chain = _chain(e)
    for name in reversed(chain):
        if name in _NEVER_SENT:
            return f"connect_failed: {name}", Billing.never_sent
    if "ConnectError" in chain[2:] or "ConnectTimeout" in chain[2:]:  # httpcore's own: no
        return f"connect_failed: {chain[-1]}", Billing.never_sent  # request was written
    dropped = [n for n in chain if n in ("ServerDisconnectedError", "ClientOSError",
                                         "RemoteProtocolError", "ReadError", "WriteError",
                                         "ClientPayloadError", "ConnectionResetError")]
    if dropped:
        return f"connection_error: {dropped[0]}", Billing.lost
    if any("Timeout" in n for n in chain):
        return "timeout", Billing.lost
    return f"connection_error: {chain[-1]}", Billing.lost


def _parse_body(body: str) -> TeacherResponse:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        raise TransientError(f"malformed_json: {e.msg} at column {e.colno}",
                             billing=Billing.lost) from None
    if not isinstance(data, dict):
        raise TransientError("malformed_json: the body is not a JSON object", billing=Billing.lost)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise TransientError("empty_choices", billing=Billing.lost, usage=usage)
    first = choices[0] if isinstance(choices[0], dict) else {}
    message = first.get("message") if isinstance(first.get("message"), dict) else {}
    text = message.get("content")
    if not isinstance(text, str) or not text.strip():
        raise TransientError("empty_content", billing=Billing.lost, usage=usage)
    rid = data.get("id")
    return TeacherResponse(text=text, model=str(data.get("model") or ""), usage=usage or {},
                           finish_reason=first.get("finish_reason"),
                           id=str(rid) if rid else None)
