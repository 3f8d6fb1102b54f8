"""MiniCPM-V 2.6 behind an OpenAI-compatible server (vLLM first), through `openai.AsyncOpenAI`.

Per sample: the video as a content part of the kind `frames` asks for, then a chat
completion, streamed by default. `frames=server` sends the video itself (a URL as it
is; a local file as a `data:` URI, or as `file://` when the server shares the disk)
and the server samples it (vLLM: 32 frames, `np.linspace` over the clip, first and last
included; `num_frames`/`server_fps` are passed through as `media_io_kwargs`).
`frames=recipe` samples the frames here by OpenBMB's recipe (the indices `local` uses)
and sends them as vLLM's frame list, `data:video/jpeg;base64,<f1>,<f2>,...`;
`frames=images` sends them as image parts, for servers without video input (LMDeploy).
Frames are decoded and encoded in `prepare`, in the runner's decode-ahead.

Streamed timings: `ttft` (request sent to the first answer token), `decode` (first to
last token), `tpot` (`decode` per token after the first), `inference` (request sent to
the end of the stream) and `encode` (what this sample waited for its frames or its
data URI); the runner adds `total`. `usage.input_tokens`/`output_tokens` come from the
server. The client retries 408/409/429, 5xx and dropped connections with its own
backoff (honouring `Retry-After`), counted in `meta.retries`; any other error, a stream
cut before its end or an error event in it fails the sample with the server's message.

Several replicas (`base_url=A,B`) share the requests: each goes to the replica with the
fewest in flight (of those, the one sent fewest), at most `replica_concurrency` per
replica, and its record names it;
`replica_by_rank` pins a shard's process to replica `RANK % n`. At start the backend asks
each replica for its models (`/v1/models`) and version (`/version`, vLLM's): a server that
cannot be reached stops the run with one line before any sample. The openai client is
given an httpx client, so `--record`/`--replay` capture its HTTP as they do fal's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import mimetypes
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from harness.errors import HarnessError
from harness.files import not_a_file
from harness.protocols import Cost, HttpMode, SessionSpan, StandIn, session_time
from harness.registry import options_of
from harness.run.recording import cassette_source
from harness.types import Answer, BackendError, Query, Record

if TYPE_CHECKING:
    import openai

DEFAULT_BASE_URL = "http://localhost:8000/v1"  # `vllm serve`'s default address
NO_KEY = "EMPTY"  # what a server started without --api-key accepts (the client wants one)
BENCH_URL_ENV = "VQA_HARNESS_OPENAI_BASE_URL"
"""`bench` runs this backend live against this URL when it is set, else replays."""
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPLAY_SETS = {"synthetic": PACKAGE_ROOT / "backends" / "recordings" / "openai-synthetic"}
RECORDED_BASE_URL = DEFAULT_BASE_URL
"""The base URL the committed recordings were made against (their requests' URLs)."""
SERVER_FRAMES = "chosen by the server (vLLM's default: 32, uniform over the clip)"
START_TIMEOUT_S = 10.0
_KIND_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    413: "input_too_large",
    422: "validation_error",
    429: "rate_limited",
}

_requests: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "openai_requests", default=None
)


class ServerError(HarnessError):
    """An OpenAI-compatible server that cannot be used: unreachable, refusing the key, or
    serving no single model to use."""


@dataclass
class _Replica:
    url: str
    model: str
    version: str | None
    in_flight: int = 0
    sent: int = 0
    client: Any = None  # openai.AsyncOpenAI, made on first use (it is bound to the loop)
    slots: asyncio.Semaphore | None = None


@dataclass
class OpenAIBackend:
    """MiniCPM-V 2.6 behind an OpenAI-compatible server (vLLM's), over `openai.AsyncOpenAI`."""

    name: ClassVar[str] = "openai"
    default_concurrency: ClassVar[int] = 8
    price_unit: ClassVar[str] = "GPU-hour (each replica's GPUs over the run's sessions)"

    base_url: str = field(
        default=DEFAULT_BASE_URL,
        metadata={"help": "the server's /v1 URL; several replicas comma-separated"},
    )
    model: str | None = field(
        default=None, metadata={"help": "served model (default: the one /v1/models lists)"}
    )
    api_key_env: str | None = field(
        default=None,
        metadata={"help": "environment variable holding the key (none for a local vLLM)"},
    )
    frames: Literal["server", "recipe", "images"] = field(
        default="recipe",
        metadata={
            "help": "server: send the video, the server samples it; recipe: OpenBMB's frames "
            "as a video/jpeg frame list; images: the same frames as image parts"
        },
    )
    video_input: Literal["data-uri", "file"] = field(
        default="data-uri",
        metadata={"help": "frames=server, a local file: inline data: URI, or file:// path"},
    )
    num_frames: int | None = field(
        default=None, metadata={"help": "frames=server: frames the server samples (vLLM: 32)"}
    )
    server_fps: float | None = field(
        default=None, metadata={"help": "frames=server: the server's sampling rate cap"}
    )
    fps: float = field(default=1.0, metadata={"help": "recipe/images: frames per second"})
    max_frames: int = field(default=64, metadata={"help": "recipe/images: frame cap (OpenBMB)"})
    jpeg_quantiser: int = field(
        default=2, metadata={"help": "recipe/images: JPEG quantiser, 2 (best) to 31"}
    )
    max_tokens: int = field(default=2048, metadata={"help": "longest answer in tokens"})
    temperature: float = field(default=0.0, metadata={"help": "0: greedy"})
    seed: int | None = field(default=None, metadata={"help": "sampling seed sent to the server"})
    stop: str | None = field(default=None, metadata={"help": "stop strings, comma-separated"})
    stream: bool = field(default=True, metadata={"help": "stream the answer (ttft, tpot)"})
    max_retries: int = field(default=2, metadata={"help": "the client's retries per request"})
    timeout: float = field(default=600.0, metadata={"help": "seconds per HTTP request"})
    replica_concurrency: int = field(
        default=8, metadata={"help": "requests in flight per replica at most"}
    )
    replica_by_rank: bool = field(
        default=False, metadata={"help": "use only replica RANK % n (a shard per replica)"}
    )
    gpus_per_replica: int = field(default=1, metadata={"help": "GPUs each replica runs on"})
    frame_cache_mb: int = field(default=1024, metadata={"help": "memory for encoded frames"})
    _replicas: list[_Replica] = field(default_factory=list, init=False, repr=False)
    _encoded: Any = field(default=None, init=False, repr=False)  # EncodedFrameCache
    _mode: HttpMode = field(default="live", init=False, repr=False)

    def __post_init__(self) -> None:
        for option in ("max_frames", "max_tokens", "replica_concurrency", "gpus_per_replica"):
            if getattr(self, option) < 1:
                raise ValueError(f"{option} must be at least 1, got {getattr(self, option)}")
        for option in ("fps", "timeout"):
            if getattr(self, option) <= 0:
                raise ValueError(f"{option} must be positive, got {getattr(self, option)}")
        if not 2 <= self.jpeg_quantiser <= 31:
            raise ValueError(f"jpeg_quantiser must be 2 to 31, got {self.jpeg_quantiser}")
        if self.max_retries < 0 or not 0 <= self.temperature <= 2:
            raise ValueError("max_retries must be 0 or more and temperature 0 to 2")
        import openai  # noqa: F401  (seconds to import: here, not in the first sample's time)

        urls = [u.strip().rstrip("/") for u in self.base_url.split(",") if u.strip()]
        if not urls:
            raise ValueError("base_url names no server")
        if self.replica_by_rank:
            rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
            urls = [urls[rank % len(urls)]]
        self._replicas = [self._connect(url) for url in urls]
        models = {r.model for r in self._replicas}
        if len(models) > 1:
            raise ServerError(f"replicas serve different models ({', '.join(sorted(models))})")
        if self.frames != "server":
            from backends.openai_frames import EncodedFrameCache

            self._encoded = EncodedFrameCache(
                fps=self.fps,
                max_frames=self.max_frames,
                quantiser=self.jpeg_quantiser,
                max_bytes=self.frame_cache_mb * 2**20,
            )

    @classmethod
    def unavailable_reason(cls, mode: HttpMode = "live") -> str | None:
        """The openai package missing; the server itself is checked when the backend starts."""
        import importlib.util

        if importlib.util.find_spec("openai") is None:
            return "needs the openai package: pip install openai"
        return None

    @classmethod
    def secret_variables(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """`api_key_env`, when the server takes a key."""
        variable = options.get("api_key_env")
        return (variable,) if variable else ()

    def use_http_mode(self, mode: HttpMode) -> None:
        self._mode = mode

    @classmethod
    def estimate_cost(
        cls, records: Sequence[Record], sessions: Sequence[SessionSpan], price: float | None
    ) -> Cost:
        """Price per GPU-hour times the replicas' GPUs times the sessions' wall time, per
        sample written; the replicas are those the records name."""
        if price is None:
            return Cost(None, "no GPU price given")
        seconds, written = session_time(sessions)
        if not written:
            return Cost(None, "no finished session wrote a sample")
        per_replica: dict[str, int] = {}  # each replica the records name, and its GPUs
        for record in records:
            if url := record.meta.get("replica"):
                gpus_here = record.meta.get("gpus_per_replica", 1)
                per_replica[url] = max(per_replica.get(url, gpus_here), gpus_here)
        replicas = per_replica.keys()
        gpus = sum(per_replica.values()) or 1
        basis = (
            f"{seconds:.1f} s of {len(replicas) or 1} replica(s), {gpus} GPU(s) in all, "
            f"for {written} samples at ${price:g}/GPU-hour"
        )
        return Cost(1000 * price * gpus * seconds / 3600 / written, basis)

    @classmethod
    def bench_standin(cls, benchmark: str, demo_dir: Path | None) -> StandIn | str | None:
        """Live against $VQA_HARNESS_OPENAI_BASE_URL when set; else the committed recording."""
        reason = cls.unavailable_reason()
        if reason is not None:
            return reason
        if url := os.environ.get(BENCH_URL_ENV):
            return StandIn(f"live server {_public(url)} (from ${BENCH_URL_ENV})", {"base_url": url})
        replay = REPLAY_SETS.get(benchmark)
        if replay is None:
            return f"no server (set ${BENCH_URL_ENV}) and no recording of {benchmark}"
        note = (
            f"replayed from the committed recording {replay.relative_to(PACKAGE_ROOT)} "
            f"(recorded against: {cassette_source(replay)}), because ${BENCH_URL_ENV} is not set"
        )
        return StandIn(note, options={"base_url": RECORDED_BASE_URL}, replay=replay)

    def describe(self) -> dict[str, Any]:
        """Every option, the served model, each replica's server version, and what the
        frame mode means for what the model sees."""
        import openai

        frames = {
            "server": f"the server samples the video: {SERVER_FRAMES}",
            "recipe": "OpenBMB's recipe here (local's indices), sent as data:video/jpeg frames",
            "images": "OpenBMB's recipe here (local's indices), sent as image parts",
        }[self.frames]
        return {
            **options_of(self),
            "base_url": ",".join(_public(r.url) for r in self._replicas),
            "model": self._replicas[0].model,
            "replicas": [{"url": _public(r.url), "version": r.version} for r in self._replicas],
            "server_version": self._replicas[0].version,
            "frame_sampling": frames,
            "frame_encoding": f"JPEG, FFmpeg mjpeg at quantiser {self.jpeg_quantiser}"
            if self.frames != "server"
            else "none (the video as it is)",
            "slices_per_frame": "the server's (vLLM: 1 per video frame, no image ids; "
            "local defaults to max_slice_nums=2)",
            "openai": openai.__version__,
        }

    def prepare(self, video: str) -> None:
        """Decode, sample and encode the video's frames ahead of its questions."""
        if self._encoded is not None:
            from backends.local import local_file

            self._encoded.warm(local_file(video))

    async def answer(self, query: Query) -> Answer:
        counter = [0]
        _requests.set(counter)
        content, encode_s, sent = await self._video_parts(query.video)
        content.append({"type": "text", "text": query.prompt})
        replica = min(self._replicas, key=lambda r: (r.in_flight, r.sent))  # ties: in turn
        replica.in_flight += 1
        replica.sent += 1
        try:
            if replica.slots is None:
                replica.slots = asyncio.Semaphore(self.replica_concurrency)
            async with replica.slots:
                timings, usage, text, meta = await self._complete(replica, content)
        except BackendError as exc:
            exc.details.update(replica=_public(replica.url), retries=max(counter[0] - 1, 0))
            raise
        finally:
            replica.in_flight -= 1
        timings["encode"] = encode_s
        meta.update(
            replica=_public(replica.url),
            gpus_per_replica=self.gpus_per_replica,
            retries=max(counter[0] - 1, 0),
            **sent,
        )
        return Answer(text=text, timings=timings, usage=usage, meta=meta)

    async def aclose(self) -> None:
        for replica in self._replicas:
            if replica.client is not None:
                await replica.client.close()
                replica.client = None
        self._encoded = None

    def _request(self, content: list[dict[str, Any]]) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self._replicas[0].model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.seed is not None:
            request["seed"] = self.seed
        if self.stop:
            request["stop"] = [s for s in self.stop.split(",") if s]
        video = {"num_frames": self.num_frames, "fps": self.server_fps}
        if self.frames == "server" and any(v is not None for v in video.values()):
            media = {k: v for k, v in video.items() if v is not None}
            request["extra_body"] = {"media_io_kwargs": {"video": media}}
        if self.stream:
            request.update(stream=True, stream_options={"include_usage": True})
        return request

    async def _complete(
        self, replica: _Replica, content: list[dict[str, Any]]
    ) -> tuple[dict[str, float], dict[str, int], str, dict[str, Any]]:
        """(timings, usage, text, meta) of one chat completion on `replica`."""
        import openai

        client = self._client(replica)
        sent = time.perf_counter()
        try:
            response = await client.chat.completions.create(**self._request(content))
        except openai.APIError as exc:
            raise _as_backend_error(exc) from exc
        if not self.stream:
            return _whole(response, time.perf_counter() - sent)
        parts: list[str] = []
        first = last = None
        finish = usage = request_id = None
        try:
            async with response:
                async for chunk in response:
                    request_id = request_id or chunk.id
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            last = time.perf_counter()
                            first = first or last
                            parts.append(choice.delta.content)
                        finish = choice.finish_reason or finish
        except (openai.APIConnectionError, httpx.HTTPError) as exc:
            cause = exc.__cause__ or exc
            raise BackendError(
                "stream_cut", f"the stream broke after {len(parts)} chunks: {cause!r}"
            ) from exc
        except openai.APIError as exc:
            raise _as_backend_error(exc, "stream_error") from exc
        ended = time.perf_counter()
        if finish is None:
            raise BackendError(
                "stream_cut", f"the stream ended after {len(parts)} chunks with no finish_reason"
            )
        tokens = usage.completion_tokens if usage and usage.completion_tokens else len(parts)
        timings = {"inference": ended - sent}
        if first is not None and last is not None:
            timings.update(ttft=first - sent, decode=last - first)
            if tokens > 1:
                timings["tpot"] = (last - first) / (tokens - 1)
        return (
            timings,
            _usage(usage),
            "".join(parts),
            {"request_id": request_id, "finish_reason": finish},
        )

    def _client(self, replica: _Replica) -> openai.AsyncOpenAI:
        if replica.client is None:
            import openai

            http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=START_TIMEOUT_S),
                limits=httpx.Limits(max_connections=self.replica_concurrency),
                event_hooks={"request": [_count_request]},
            )
            replica.client = openai.AsyncOpenAI(
                base_url=replica.url,
                api_key=self._key(),
                max_retries=self.max_retries,
                # openai 3.x types only httpx2 clients but takes an httpx one (it checks for
                # both), which vcrpy records and the tests' emulators reach.
                http_client=http,  # type: ignore[arg-type]
            )
        return replica.client

    def _key(self) -> str:
        return (os.environ.get(self.api_key_env) if self.api_key_env else None) or NO_KEY

    def _connect(self, url: str) -> _Replica:
        """Ask the server at `url` for its models and version, or say why it cannot be used."""
        headers = {"Authorization": f"Bearer {self._key()}"}
        try:
            with httpx.Client(timeout=START_TIMEOUT_S, headers=headers) as http:
                listed = http.get(f"{url}/models")
                root = url.removesuffix("/v1")
                version = http.get(f"{root}/version") if root != url else None
        except httpx.HTTPError as exc:
            raise ServerError(
                f"cannot reach the server at {_public(url)}: {type(exc).__name__}: {exc} "
                f"(start it, e.g. `vllm serve openbmb/MiniCPM-V-2_6 ...`, or pass -B base_url=)"
            ) from None
        if listed.status_code in (401, 403):
            hint = f"set ${self.api_key_env}" if self.api_key_env else "pass -B api_key_env=VAR"
            raise ServerError(f"{_public(url)} refused the key (HTTP {listed.status_code}): {hint}")
        try:
            listed.raise_for_status()
            served = [m["id"] for m in listed.json()["data"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise ServerError(f"{_public(url)}/models gave no model list: {exc}") from None
        if self.model is None and len(served) != 1:
            raise ServerError(
                f"{_public(url)} serves {len(served)} models ({', '.join(served) or 'none'}): "
                "pass -B model="
            )
        model = self.model or served[0]
        if model not in served:
            raise ServerError(f"{_public(url)} does not serve {model} (it serves: {served})")
        found = None
        if version is not None and version.status_code == 200:
            with contextlib.suppress(ValueError, AttributeError):
                found = str(version.json().get("version"))
        return _Replica(url, model, found)

    async def _video_parts(self, video: str) -> tuple[list[dict[str, Any]], float, dict[str, Any]]:
        """(content parts carrying the video, seconds spent on them, what a record says
        was sent: `local`'s keys, `frames`, `frame_indices`, ...)."""
        from harness.media.video import VideoError

        started = time.perf_counter()
        remote = video.startswith(("http://", "https://"))
        if self.frames == "server" and remote:
            return [_video_part(video)], 0.0, {"frames": SERVER_FRAMES, "video_input": "url"}
        if not remote and (reason := not_a_file(Path(video))):
            raise BackendError("video_not_found", f"{video}: {reason}")
        try:
            if self.frames == "server":
                url = await asyncio.to_thread(self._file_url, video)
                sent = {"frames": SERVER_FRAMES, "video_input": self.video_input}
                return [_video_part(url)], time.perf_counter() - started, sent
            assert self._encoded is not None
            from backends.local import local_file

            path = await asyncio.to_thread(local_file, video)
            encoded, _ = await asyncio.to_thread(self._encoded.get, path)
        except VideoError as exc:
            raise BackendError("bad_video", str(exc)) from exc
        if self.frames == "recipe":
            parts = [_video_part(encoded.video_uri())]
        else:
            parts = [{"type": "image_url", "image_url": {"url": u}} for u in encoded.image_uris()]
        return parts, time.perf_counter() - started, encoded.describe()

    def _file_url(self, video: str) -> str:
        """A local file for the server: probed first (an unreadable video is never sent)."""
        from harness.media.video import probe

        probe(video)
        path = os.path.abspath(video)
        if self.video_input == "file":
            return Path(path).as_uri()
        mime = mimetypes.guess_type(path)[0] or "video/mp4"
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        return f"data:{mime};base64,{data}"


def _video_part(url: str) -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": url}}


def _whole(
    response: Any, seconds: float
) -> tuple[dict[str, float], dict[str, int], str, dict[str, Any]]:
    """A non-streamed completion: its text, usage and the request's time."""
    if not response.choices or response.choices[0].message.content is None:
        raise BackendError("invalid_response", "the completion has no message content")
    choice = response.choices[0]
    meta = {"request_id": response.id, "finish_reason": choice.finish_reason}
    return {"inference": seconds}, _usage(response.usage), choice.message.content, meta


def _usage(usage: Any) -> dict[str, int]:
    if usage is None:
        return {}
    counts = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}
    return {k: int(v) for k, v in counts.items() if v is not None}


async def _count_request(request: httpx.Request) -> None:
    """Counts the HTTP requests of the current sample (the first, then each retry)."""
    counter = _requests.get()
    if counter is not None:
        counter[0] += 1


def _public(url: str) -> str:
    """A URL without any user or password in it."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _as_backend_error(exc: Exception, kind: str | None = None) -> BackendError:
    """The client's error as the sample's failure, with the server's own message."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        error = body.get("error", body) if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        status = exc.status_code
        fallback = "server_error" if status >= 500 else f"http_{status}"
        return BackendError(
            kind or _KIND_BY_STATUS.get(status, fallback),
            str(message or exc.message),
            status_code=status,
        )
    if isinstance(exc, openai.APITimeoutError):
        return BackendError(kind or "timeout", f"no response in time: {exc}")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return BackendError(kind or "transport_error", f"{exc.message} ({cause!r})")
    return BackendError(kind or "server_error", str(exc))
