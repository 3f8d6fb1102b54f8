"""An in-process emulator of an OpenAI-compatible chat-completions endpoint, for tests.

It answers `POST {base_url}/chat/completions` with the shape the OpenAI API
returns (`id`, `object: "chat.completion"`, `created`, `model`, `choices` with
`index`, `message{role, content, refusal}`, `logprobs`, `finish_reason`, `usage`,
`system_fingerprint`, an `x-request-id` header) and its error shape
(`{"error": {"message", "type", "param", "code"}}`): 401 for a missing or wrong
bearer key (echoing the key masked, as OpenAI does), 400 for a malformed body.
Its replies are scripted, not a model's; ids, timestamps and token counts are
deterministic stand-ins. Faults (`inject`) stand for what a real endpoint or the
network in front of it does: 429 with `retry-after`, 5xx, a non-JSON body, a body
without choices, a dropped connection.

`installed()` makes every sync httpx client created inside the block use an
`httpx.MockTransport` whose handler is this emulator, so `harness.scoring.judge` talks to
it unmodified and vcrpy (which patches `MockTransport.handle_request`) records it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import httpx._client

FAULTS = ("rate_limit", "server_error", "non_json", "missing_choices", "drop")
ROLES = ("system", "user", "assistant", "developer", "tool")
_CREATED_EPOCH = 1_717_000_000  # a fixed clock, so re-recorded cassettes differ only in content
# What a base_url that points at a web page rather than the API answers (a proxy's sign-in).
_HTML_PAGE = "<!DOCTYPE html><html><head><title>Sign in</title></head><body></body></html>"


class OpenAIEmulator:
    """An OpenAI-compatible chat-completions endpoint that accepts `api_key`.

    `reply` is the assistant's text, or a function of the request's JSON body that
    returns it. Faults are served in injection order, one per request.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "https://api.openai.com/v1",
        reply: str | Callable[[dict], str] = "{'pred': 'yes', 'score': 5}",
    ) -> None:
        self.api_key = api_key
        self.url = httpx.URL(f"{base_url.rstrip('/')}/chat/completions")
        self.reply = reply
        self.transport = httpx.MockTransport(self._handle)
        self.received: list[dict] = []  # JSON bodies of authorised requests
        self._faults: list[tuple[str, dict[str, Any]]] = []
        self._served = 0
        self._lock = threading.Lock()

    def installed(self) -> contextlib.AbstractContextManager[OpenAIEmulator]:
        """Route every sync httpx client created inside the block to this emulator."""
        return self._installed()

    @contextlib.contextmanager
    def _installed(self) -> Iterator[OpenAIEmulator]:
        saved = httpx._client.HTTPTransport

        def transport(*args: Any, **kwargs: Any) -> httpx.MockTransport:
            return self.transport

        httpx._client.HTTPTransport = transport  # type: ignore[assignment,misc]
        try:
            yield self
        finally:
            httpx._client.HTTPTransport = saved

    def inject(self, fault: str, *, times: int = 1, **params: Any) -> None:
        """Serve `fault` to the next `times` authorised requests.

        "rate_limit" takes `retry_after` (seconds, default 1); "server_error" `status` and
        `message`.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._faults += [(fault, params)] * times

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or request.url.copy_with(query=None) != self.url:
            return _error(404, f"Invalid URL ({request.method} {request.url.path})", None, None)
        if denied := self._check_auth(request):
            return denied
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
            if fault is None:
                self._served += 1
            serial = self._served
        if fault is not None:
            return _fault(*fault, request)
        try:
            body = json.loads(request.content)
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.", None, None)
        if problem := _validate(body):
            return _error(400, problem[1], problem[0], None)
        with self._lock:
            self.received.append(body)
        content = self.reply(body) if callable(self.reply) else self.reply
        return self._completion(body, content, serial)

    def _check_auth(self, request: httpx.Request) -> httpx.Response | None:
        header = request.headers.get("authorization", "")
        if not header:
            return _error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                None,
                None,
            )
        key = header.removeprefix("Bearer ").strip()
        if key != self.api_key:
            masked = f"{key[:8]}{'*' * max(len(key) - 12, 4)}{key[-4:]}"
            return _error(
                401,
                f"Incorrect API key provided: {masked}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                None,
                "invalid_api_key",
            )
        return None

    def _completion(self, body: dict, content: str, serial: int) -> httpx.Response:
        digest = hashlib.sha256(f"{serial}:{json.dumps(body, sort_keys=True)}".encode())
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        completion_tokens = len(content.split())
        payload = {
            "id": f"chatcmpl-{digest.hexdigest()[:29]}",
            "object": "chat.completion",
            "created": _CREATED_EPOCH + serial,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_emulated",
        }
        return httpx.Response(
            200,
            json=payload,
            headers={"x-request-id": f"req_{digest.hexdigest()[29:61]}"},
        )


def _validate(body: Any) -> tuple[str, str] | None:
    """(param, message) for the first problem OpenAI would reject the body for."""
    if not isinstance(body, dict):
        return "body", "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model", "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages", "'messages' must be a non-empty array."
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages.[{index}].role", f"Invalid value for 'messages[{index}].role'."
        if not isinstance(message.get("content"), str):
            return f"messages.[{index}].content", f"Invalid type for 'messages[{index}].content'."
    temperature = body.get("temperature", 1)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        return "temperature", "Invalid type for 'temperature': expected a decimal."
    if not 0 <= temperature <= 2:
        return "temperature", f"Invalid 'temperature': decimal above maximum value ({temperature})."
    max_tokens = body.get("max_tokens", 1)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens", f"Invalid 'max_tokens': {max_tokens!r}."
    return None


def _fault(kind: str, params: dict[str, Any], request: httpx.Request) -> httpx.Response:
    if kind == "rate_limit":
        retry_after = params.get("retry_after", 1)
        response = _error(
            429,
            "Rate limit reached for requests. Please try again in "
            f"{retry_after}s. Visit https://platform.openai.com/account/rate-limits "
            "to learn more.",
            None,
            "rate_limit_exceeded",
            type_="requests",
        )
        response.headers["retry-after"] = str(retry_after)
        return response
    if kind == "server_error":
        return _error(
            params.get("status", 500),
            params.get(
                "message",
                "The server had an error while processing your request. Sorry about that!",
            ),
            None,
            None,
            type_="server_error",
        )
    if kind == "non_json":
        return httpx.Response(200, text=_HTML_PAGE, headers={"content-type": "text/html"})
    if kind == "missing_choices":
        return httpx.Response(200, json={"id": "chatcmpl-empty", "object": "chat.completion"})
    raise httpx.ReadError("connection reset by peer", request=request)


def _error(
    status: int,
    message: str,
    param: str | None,
    code: str | None,
    *,
    type_: str = "invalid_request_error",
) -> httpx.Response:
    error = {"message": message, "type": type_, "param": param, "code": code}
    return httpx.Response(status, json={"error": error})
