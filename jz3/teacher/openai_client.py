"""One attempt against an OpenAI-compatible chat-completions endpoint (the `openai` package).

The SDK's own retries are off (`max_retries=0`); `jz3.teacher.runner` retries. The request goes
through the client's generic `post` (same auth, base_url, timeouts and error classes as
`chat.completions.create`, without its per-call param transform); the raw HTTP response is
read and checked here, so every way an attempt can go wrong becomes a
`TransientError` / `PermanentError` with a short reason: `http_429`, `http_503`, `timeout`,
`connection_error`, `malformed_json`, `empty_choices`, `empty_content`, ...
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from typing import Any, Dict, Mapping, Optional

import httpx
import openai

from jz3.config.teacher import TeacherConfig
from jz3.teacher.types import PermanentError, TeacherRequest, TeacherResponse, TransientError

RETRYABLE_STATUS = {408, 409, 425, 429}


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
        self.send_idempotency_key = cfg.idempotency_header
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
        try:
            # The client's generic `post` (the SDK's way to send a raw body): the typed
            # `chat.completions.create` spends ~3 ms of CPU per call transforming its params.
            resp = await self.client.post("/chat/completions", cast_to=httpx.Response,
                                          body=payload,
                                          options={"headers": headers, "timeout": timeout_s})
            body = resp.text
        except openai.APIConnectionError as e:  # APITimeoutError included
            raise TransientError(_connection_reason(e), billed=True) from None
        except openai.APIStatusError as e:
            code = e.status_code
            if code in RETRYABLE_STATUS or code >= 500:
                raise TransientError(f"http_{code}",
                                     retry_after=parse_retry_after(e.response.headers)) from None
            raise PermanentError(f"http_{code}: {str(e.message)[:200]}") from None
        return _parse_body(body)


def _connection_reason(e: BaseException) -> str:
    """`timeout` or `connection_error: <root cause>`; the aiohttp transport reports a dropped
    connection as a timeout, so the cause chain decides."""
    chain, cur = [], e
    while cur is not None and len(chain) < 10:
        chain.append(type(cur).__name__)
        cur = cur.__cause__ or cur.__context__
    dropped = [n for n in chain if n in ("ServerDisconnectedError", "ClientOSError",
                                         "RemoteProtocolError", "ReadError", "ConnectError",
                                         "ClientConnectorError", "ConnectionResetError")]
    if dropped:
        return f"connection_error: {dropped[0]}"
    if any("Timeout" in n for n in chain):
        return "timeout"
    return f"connection_error: {chain[-1]}"


def _parse_body(body: str) -> TeacherResponse:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        raise TransientError(f"malformed_json: {e.msg} at column {e.colno}", billed=True) from None
    if not isinstance(data, dict):
        raise TransientError("malformed_json: the body is not a JSON object", billed=True)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise TransientError("empty_choices", billed=True, usage=usage)
    first = choices[0] if isinstance(choices[0], dict) else {}
    message = first.get("message") if isinstance(first.get("message"), dict) else {}
    text = message.get("content")
    if not isinstance(text, str) or not text.strip():
        raise TransientError("empty_content", billed=True, usage=usage)
    return TeacherResponse(text=text, model=str(data.get("model") or ""), usage=usage or {},
                           finish_reason=first.get("finish_reason"))
