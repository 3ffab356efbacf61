"""One attempt against an OpenAI-compatible chat-completions endpoint (the `openai` package).

The SDK's own retries are off (`max_retries=0`); `jz3.teacher.runner` retries. The raw HTTP
response is read and checked here, so every way an attempt can go wrong becomes a
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
        limits = httpx.Limits(max_connections=cfg.concurrency * 2,
                              max_keepalive_connections=cfg.concurrency)
        self._http = httpx.AsyncClient(limits=limits, timeout=cfg.timeout_s)
        self.client = openai.AsyncOpenAI(base_url=cfg.base_url, api_key=key, max_retries=0,
                                         timeout=cfg.timeout_s, http_client=self._http)

    async def aclose(self) -> None:
        await self.client.close()

    async def send(self, req: TeacherRequest, params: Dict[str, Any],
                   timeout_s: float) -> TeacherResponse:
        headers = {"Idempotency-Key": req.key} if self.send_idempotency_key else {}
        try:
            raw = await self.client.chat.completions.with_raw_response.create(
                model=self.name, messages=[{"role": "user", "content": req.prompt}],
                temperature=params["temperature"], top_p=params["top_p"],
                max_tokens=params["max_tokens"], timeout=timeout_s, extra_headers=headers)
            body = raw.http_response.text
        except openai.APITimeoutError:
            raise TransientError("timeout", billed=True) from None
        except openai.APIConnectionError as e:
            raise TransientError(f"connection_error: {type(e.__cause__ or e).__name__}",
                                 billed=True) from None
        except openai.APIStatusError as e:
            code = e.status_code
            msg = str(e.message)[:200]
            if code in RETRYABLE_STATUS or code >= 500:
                raise TransientError(f"http_{code}", retry_after=parse_retry_after(e.response.headers)) from None
            raise PermanentError(f"http_{code}: {msg}") from None
        except (httpx.TimeoutException,) as e:
            raise TransientError(f"timeout: {type(e).__name__}", billed=True) from None
        except (httpx.TransportError, httpx.DecodingError) as e:
            raise TransientError(f"connection_error: {type(e).__name__}", billed=True) from None
        return _parse_body(body)


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
