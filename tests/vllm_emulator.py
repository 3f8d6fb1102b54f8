"""An in-process emulator of vLLM's OpenAI-compatible server serving MiniCPM-V 2.6, for tests.

Reached through httpx's transport layer, like `fal_emulator`: `installed()` makes every
httpx client created inside the block (sync and async) use an `httpx.MockTransport`
whose handler is this emulator, so the real `openai` client (given an httpx client, as
`backends.openai_compat` does) talks to it unmodified and vcrpy records it.

Checked against vLLM's sources (vllm-project/vllm, `vllm/entrypoints/openai/`: the
engine protocol's `ErrorResponse`, `ModelCard`, `UsageInfo`, `StreamOptions`; and
`vllm/multimodal/video.py`'s frame choice) and openai-python's streaming client:
- `GET /v1/models`: `{"object": "list", "data": [ModelCard]}` with `owned_by: "vllm"`,
  `root` and `max_model_len`; `GET /version`: `{"version": ...}`.
- `POST /v1/chat/completions`, streamed (SSE `data: {chunk}` lines, a first chunk with the
  role, one chunk per token, a last one with `finish_reason`, then with
  `stream_options.include_usage` a chunk with empty `choices` and `usage`, then
  `data: [DONE]`) or not (`chat.completion` with `usage`).
- Errors as vLLM writes them: `{"error": {"message", "type", "param", "code": <int>}}`;
  404 for an unknown model ("The model `x` does not exist."), 400 for more videos than
  `--limit-mm-per-prompt` allows, an undecodable data URI, a local file without
  `--allowed-local-media-path`, and a prompt plus `max_tokens` beyond `max_model_len`.
- Video parts: `data:video/jpeg;base64,<f1>,<f2>,...` is split and each frame decoded
  (its count and sizes are checked against `max_frames` and kept in `received`);
  `data:video/<mp4...>` and `file://` videos are probed and sampled as vLLM's default
  loader does: k = min(num_frames (32, or `media_io_kwargs.video.num_frames`), frames),
  capped by floor(duration x fps) when an fps is given, then `np.linspace(0, n-1, k)`
  as ints. `http(s)` URLs are not fetched (32 frames are assumed). Image parts are
  decoded too. Each video frame costs 64 prompt tokens (one slice, vLLM's rule for
  MiniCPM-V 2.6 video), each image 64 x (1 + 2 slices), each text word one.

It is not vLLM: the answers are scripted (`reply`), tokens are words, and timings are
`service_time` split between the first token and the rest. Faults (`inject`): 429 with
`Retry-After`, 500, a connection dropped before the response, a stream cut after some
tokens, a slow first token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import math
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import numpy as np
from httpx_routing import routed_to

FAULTS = ("rate_limit", "server_error", "drop", "stream_cut", "slow_first_token")
MODEL = "openbmb/MiniCPM-V-2_6"
VERSION = "0.11.0"
TOKENS_PER_FRAME = 64
_CREATED = 1_717_000_000


@dataclass
class Received:
    """What one chat request carried: its body without media, and the media decoded."""

    body: dict[str, Any]
    videos: list[dict[str, Any]] = field(default_factory=list)
    images: list[tuple[int, int]] = field(default_factory=list)


class MediaError(ValueError):
    """A media part vLLM would refuse (400)."""


def guessing_reply(body: dict[str, Any]) -> str:
    """A stand-in answer: a letter chosen by hashing the request's text."""
    text = " ".join(
        p.get("text", "")
        for m in body["messages"]
        for p in (m["content"] if isinstance(m["content"], list) else [{"text": m["content"]}])
    )
    return f"The answer is {'ABCD'[hashlib.sha256(text.encode()).digest()[0] % 4]}."


class VLLMEmulator:
    """vLLM's OpenAI-compatible server with MiniCPM-V 2.6, at `base_url`."""

    def __init__(
        self,
        *,
        base_url: str = "http://localhost:8000/v1",
        model: str = MODEL,
        api_key: str | None = None,
        reply: Callable[[dict[str, Any]], str] = guessing_reply,
        service_time: float = 0.0,
        max_model_len: int = 16384,
        max_videos: int = 1,
        max_frames: int = 64,
        allowed_local_media_path: str | None = None,
    ) -> None:
        self.base = httpx.URL(base_url.rstrip("/") + "/")
        self.model = model
        self.api_key = api_key
        self.reply = reply
        self.service_time = service_time
        self.max_model_len = max_model_len
        self.max_videos = max_videos
        self.max_frames = max_frames
        self.allowed_local_media_path = allowed_local_media_path
        self.received: list[Received] = []
        self.hosts: list[str] = []  # the host of each chat request, in order
        self.in_flight = 0
        self.peak_in_flight = 0
        self._faults: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.transport = httpx.MockTransport(self._handle)
        self.sync_transport = httpx.MockTransport(self._handle_sync)

    def installed(self) -> contextlib.AbstractContextManager[VLLMEmulator]:
        """Route every httpx client created inside the block to this emulator."""
        return self._installed()

    @contextlib.contextmanager
    def _installed(self) -> Iterator[VLLMEmulator]:
        with routed_to(self.transport, self.sync_transport):
            yield self

    def inject(self, fault: str, *, times: int = 1, **params: Any) -> None:
        """Serve `fault` to the next `times` chat requests: `rate_limit` (`retry_after`),
        `server_error` (`status`, `message`), `drop`, `stream_cut` (`after` tokens),
        `slow_first_token` (`delay` seconds)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self._faults += [(fault, params)] * times

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == f"{self.base.path}chat/completions":
            return self._check_key(request) or await self._chat(request)
        return self._handle_sync(request)

    def _handle_sync(self, request: httpx.Request) -> httpx.Response:
        """`/version` and `/v1/models` (what a sync client asks here)."""
        path = request.url.path
        if request.method == "GET" and path == "/version":
            return httpx.Response(200, json={"version": VERSION})
        if denied := self._check_key(request):
            return denied
        if request.method == "GET" and path == f"{self.base.path}models":
            return httpx.Response(200, json=self._models())
        return _error(404, f"Not Found: {request.method} {path}", "NotFoundError")

    def _check_key(self, request: httpx.Request) -> httpx.Response | None:
        if self.api_key is None:
            return None
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return httpx.Response(401, json={"error": "Unauthorized"})
        return None

    def _models(self) -> dict[str, Any]:
        card = {
            "id": self.model,
            "object": "model",
            "created": _CREATED,
            "owned_by": "vllm",
            "root": self.model,
            "parent": None,
            "max_model_len": self.max_model_len,
            "permission": [],
        }
        return {"object": "list", "data": [card]}

    async def _chat(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        kind, params = fault or ("", {})
        if kind == "rate_limit":
            response = _error(429, "Too many requests", "RateLimitError")
            response.headers["retry-after"] = str(params.get("retry_after", 0))
            return response
        if kind == "server_error":
            message = params.get("message", "EngineCore encountered an issue.")
            return _error(params.get("status", 500), message, "")
        if kind == "drop":
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        try:
            body = json.loads(request.content)
        except ValueError:
            return _error(400, "Invalid JSON body", "BadRequestError")
        if body.get("model") != self.model:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        try:
            received, prompt_tokens = self._read(body)
        except MediaError as exc:
            return _error(400, str(exc), "BadRequestError")
        max_tokens = body.get("max_tokens") or 16
        if prompt_tokens + max_tokens > self.max_model_len:
            return _error(
                400,
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"However, you requested {prompt_tokens + max_tokens} tokens "
                f"({prompt_tokens} in the messages, {max_tokens} in the completion). "
                "Please reduce the length of the messages or completion.",
                "BadRequestError",
            )
        with self._lock:
            self.received.append(received)
            self.hosts.append(request.url.host)
            serial = len(self.received)
        words = self.reply(body).split(" ")
        tokens = [w if i == 0 else f" {w}" for i, w in enumerate(words)][:max_tokens]
        finish = "length" if len(tokens) < len(words) else "stop"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        ident = f"chatcmpl-{hashlib.sha256(f'{serial}'.encode()).hexdigest()[:32]}"
        first_delay = float(params.get("delay", 0)) if kind == "slow_first_token" else 0.0
        if not body.get("stream"):
            await self._serve(self.service_time + first_delay)
            return httpx.Response(200, json=_completion(ident, body, tokens, finish, usage))
        cut = int(params.get("after", 1)) if kind == "stream_cut" else None
        chunks = self._chunks(ident, body, tokens, finish, usage, first_delay, cut, request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=chunks)

    async def _serve(self, seconds: float) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await asyncio.sleep(seconds)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _chunks(
        self,
        ident: str,
        body: dict[str, Any],
        tokens: list[str],
        finish: str,
        usage: dict[str, int],
        first_delay: float,
        cut: int | None,
        request: httpx.Request,
    ) -> AsyncIterator[bytes]:
        """The SSE body: role, tokens, finish, usage (when asked), [DONE]."""
        # Half the service time before the first token, half between the rest.
        gaps = len(tokens) - 1
        per_token = self.service_time / 2 / gaps if gaps else 0.0
        prefill = self.service_time - per_token * gaps + first_delay
        yield _sse(_chunk(ident, body, {"role": "assistant", "content": ""}, None))
        await self._serve(prefill)
        for index, token in enumerate(tokens):
            if cut is not None and index == cut:
                raise httpx.RemoteProtocolError(
                    "peer closed connection mid-stream", request=request
                )
            last = index == len(tokens) - 1
            yield _sse(_chunk(ident, body, {"content": token}, finish if last else None))
            if not last:
                await self._serve(per_token)
        if (body.get("stream_options") or {}).get("include_usage"):
            yield _sse({**_chunk(ident, body, None, None), "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    def _read(self, body: dict[str, Any]) -> tuple[Received, int]:
        """The body with its media replaced by sizes, the media decoded, and the prompt's tokens."""
        received = Received(body={})
        tokens = 0
        messages = []
        for message in body.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                tokens += len(content.split())
                messages.append(message)
                continue
            parts = []
            for part in content or []:
                kind = part.get("type")
                if kind == "text":
                    tokens += len(part["text"].split())
                    parts.append(part)
                elif kind == "video_url":
                    video = self._video(part["video_url"]["url"], body)
                    received.videos.append(video)
                    tokens += TOKENS_PER_FRAME * video["frames"]
                    parts.append({"type": kind, "video": video["kind"]})
                elif kind == "image_url":
                    received.images.append(_image_size(_decode_data(part["image_url"]["url"])))
                    tokens += TOKENS_PER_FRAME * 3
                    parts.append({"type": kind})
                else:
                    raise MediaError(f"Unknown part type: {kind}")
            messages.append({**message, "content": parts})
        if len(received.videos) > self.max_videos:
            raise MediaError(
                f"At most {self.max_videos} video(s) may be provided in one prompt, "
                f"got {len(received.videos)}."
            )
        received.body = {**body, "messages": messages}
        return received, tokens

    def _video(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """What the server would feed the model from one video part."""
        options = (body.get("media_io_kwargs") or {}).get("video") or {}
        if url.startswith("data:video/jpeg;base64,"):
            frames = url.split(",")[1:]
            if len(frames) > self.max_frames:
                raise MediaError(f"Too many frames: {len(frames)} > {self.max_frames}")
            sizes = {_image_size(base64.b64decode(f, validate=True)) for f in frames}
            if len(sizes) != 1:
                raise MediaError(f"Video frames differ in size: {sorted(sizes)}")
            return {"kind": "frames", "frames": len(frames), "size": sizes.pop()}
        if url.startswith(("http://", "https://")):
            return {"kind": "url", "frames": int(options.get("num_frames", 32)), "size": None}
        if url.startswith("file://"):
            path = unquote(urlsplit(url).path)
            allowed = self.allowed_local_media_path
            if allowed is None or not path.startswith(allowed.rstrip("/") + "/"):
                raise MediaError(
                    "Cannot load local files without `--allowed-local-media-path`."
                    if allowed is None
                    else f"The file path {path} must be a subpath of "
                    f"`--allowed-local-media-path` {allowed}."
                )
            return _sampled("file", path, options)
        if url.startswith("data:video/"):
            with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
                file.write(_decode_data(url))
                file.flush()
                return _sampled("data", file.name, options)
        raise MediaError(f"Unsupported video URL: {url[:40]}")


def vllm_frame_indices(frame_count: int, duration: float, num_frames: int, fps: float) -> list[int]:
    """The frames vLLM's default video loader picks (vllm/multimodal/video.py)."""
    count = frame_count
    if num_frames > 0:
        count = min(num_frames, frame_count)
    if fps > 0:
        count = min(count, math.floor(duration * fps))
    count = max(1, count)
    if count == frame_count:
        return list(range(count))
    return np.linspace(0, frame_count - 1, count, dtype=int).tolist()


def _sampled(kind: str, path: str, options: dict[str, Any]) -> dict[str, Any]:
    from harness.media.video import VideoError, probe

    try:
        info = probe(path)
    except VideoError as exc:
        raise MediaError(f"Failed to load video: {exc.problem}") from None
    indices = vllm_frame_indices(
        info.frame_count,
        info.duration,
        int(options.get("num_frames", 32)),
        float(options.get("fps", -1)),
    )
    return {
        "kind": kind,
        "frames": len(indices),
        "indices": indices,
        "size": (info.width, info.height),
    }


def _decode_data(url: str) -> bytes:
    header, _, data = url.partition(",")
    if not header.startswith("data:") or not header.endswith(";base64"):
        raise MediaError(f"Invalid data URL: {header[:40]}")
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        raise MediaError("Invalid base64 in data URL") from None


def _image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except UnidentifiedImageError:
        raise MediaError("Failed to load image: cannot identify image file") from None


def _chunk(
    ident: str, body: dict[str, Any], delta: dict[str, Any] | None, finish: str | None
) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": body["model"],
        "choices": [choice],
    }


def _completion(
    ident: str, body: dict[str, Any], tokens: list[str], finish: str, usage: dict[str, int]
) -> dict[str, Any]:
    message = {"role": "assistant", "content": "".join(tokens), "tool_calls": []}
    return {
        "id": ident,
        "object": "chat.completion",
        "created": _CREATED,
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def _error(status: int, message: str, kind: str) -> httpx.Response:
    error = {"message": message, "type": kind, "param": None, "code": status}
    return httpx.Response(status, json={"error": error})
