"""An optional LLM judge of open-ended answers, through any OpenAI-compatible endpoint.

It follows the convention the field uses for open-ended video QA (Video-ChatGPT's
ActivityNet-QA evaluation, as lmms-eval runs it): the judge sees the question, the
correct answer and the prediction, and answers with a Python-dict-like string
`{'pred': 'yes'|'no', 'score': N}`, N from 0 to 5; accuracy counts the yes verdicts.
The prompt is reproduced verbatim (quirks included) so that numbers compare.

`Judge.grade` never raises for a failed call or an unreadable answer: it returns an
`error` instead of a verdict, and never invents one. The API key is read from the
environment at each call and sent as a bearer token; it is never stored on the judge,
nor in what `grade` or `describe` return.
"""

from __future__ import annotations

import ast
import json
import math
import os
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.secrets import check_secret, register, scrub

if TYPE_CHECKING:
    import httpx

PROMPTS: dict[str, dict[str, str]] = {
    "video-chatgpt-v1": {
        "system": (
            "You are an intelligent chatbot designed for evaluating the correctness of "
            "generative outputs for question-answer pairs. Your task is to compare the "
            "predicted answer with the correct answer and determine if they match "
            "meaningfully. Here's how you can accomplish the task:"
            "------"
            "##INSTRUCTIONS: "
            "- Focus on the meaningful match between the predicted answer and the correct "
            "answer.\n"
            "- Consider synonyms or paraphrases as valid matches.\n"
            "- Evaluate the correctness of the prediction compared to the answer."
        ),
        "user": (
            "Please evaluate the following video-based question-answer pair:\n\n"
            "Question: {question}\n"
            "Correct Answer: {answer}\n"
            "Predicted Answer: {prediction}\n\n"
            "Provide your evaluation only as a yes/no and score where the score is an integer "
            "value between 0 and 5, with 5 indicating the highest meaningful match. Please "
            "generate the response in the form of a Python dictionary string with keys 'pred' "
            "and 'score', where value of 'pred' is  a string of 'yes' or 'no' and value of "
            "'score' is in INTEGER, not STRING."
            "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python "
            "dictionary string. For example, your response should look like this: "
            "{{'pred': 'yes', 'score': 4.8}}."
        ),
        # Several accepted answers fill `{answer}` joined with this.
        "answer_separator": " OR ",
    }
}
PROMPT_VERSION = "video-chatgpt-v1"
MAX_SCORE = 5.0
_BACKOFF_BASE = 1.0  # seconds before the first retry; doubles with each retry
_MAX_DELAY = 60.0  # no single wait is longer, whatever Retry-After says
_DICT = re.compile(r"\{[^{}]*\}")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


DEFAULT_JUDGE_URL = "https://api.openai.com/v1"


def judge_label(described: Mapping[str, Any] | None) -> str:
    """A judge as a run records it (`Judge.describe()`, in the manifest), in a few words:
    its model and prompt version, which together define its verdicts; "no judge"."""
    if not described:
        return "no judge"
    return f"judge {described.get('model')} (prompt {described.get('prompt_version')})"


class JudgeError(HarnessError):
    """A judge that cannot run here: a bad setting or no API key."""


class VerdictError(ValueError):
    """A judge output that holds no usable verdict."""


@dataclass(frozen=True)
class Verdict:
    """What a judge decided: `correct` (its 'pred' was yes) and `score` (0-5)."""

    correct: bool
    score: float


class _Failure(Exception):
    def __init__(self, kind: str, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.raw = raw


@dataclass(frozen=True)
class Judge:
    """An OpenAI-compatible chat-completions model grading open-ended answers.

    `model` must be pinned (a dated snapshot such as `gpt-4o-2024-08-06`) so that
    verdicts stay comparable. Requests use temperature 0. 429s, 5xx responses and
    transport errors are retried `max_retries` times with exponential backoff,
    honouring `Retry-After`. Build it with `from_env` for a live run, so that a
    missing key stops the run up front; a judge built directly sends no key when
    `api_key_env` is unset (enough to replay recorded HTTP).
    """

    base_url: str
    model: str
    api_key_env: str = "JUDGE_API_KEY"
    timeout: float = 60.0
    max_retries: int = 4
    prompt_version: str = PROMPT_VERSION
    max_tokens: int = 64

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise JudgeError(f"judge base_url must be an http(s) URL, got {self.base_url!r}")
        if not self.model.strip():
            raise JudgeError("judge model is required (a pinned snapshot id)")
        if self.prompt_version not in PROMPTS:
            known = ", ".join(PROMPTS)
            raise JudgeError(
                f"unknown judge prompt_version {self.prompt_version!r}; known: {known}"
            )
        if self.timeout <= 0 or self.max_retries < 0 or self.max_tokens < 1:
            raise JudgeError("judge timeout and max_tokens must be positive, max_retries >= 0")

    @classmethod
    def from_env(cls, base_url: str, model: str, **options: Any) -> Judge:
        """A judge for a live run; raises `JudgeError` when its key is not set."""
        judge = cls(base_url, model, **options)
        judge.check()
        return judge

    def check(self) -> None:
        """Raise `JudgeError` unless the environment holds the API key, `UsageError` if it
        has stray whitespace (`harness.secrets.check_secret`, which registers it)."""
        key = os.environ.get(self.api_key_env)
        if not key:
            raise JudgeError(
                f"no judge API key: set {self.api_key_env} to the API key of {self.base_url}, "
                "or name the variable that holds it with --judge-key-env"
            )
        check_secret(self.api_key_env, key)

    def describe(self) -> dict[str, Any]:
        """What a run's manifest records about the judge (never the key)."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "prompt": dict(PROMPTS[self.prompt_version]),
        }

    def messages(
        self, question: str, references: Sequence[str], prediction: str
    ) -> list[dict[str, str]]:
        """The chat messages that ask for one verdict."""
        prompt = PROMPTS[self.prompt_version]
        answer = prompt["answer_separator"].join(references)
        user = prompt["user"].format(question=question, answer=answer, prediction=prediction)
        return [{"role": "system", "content": prompt["system"]}, {"role": "user", "content": user}]

    def grade(self, question: str, references: Sequence[str], prediction: str) -> dict[str, Any]:
        """The judge's verdict for `Score.judge`: `correct` and `score`, or `error`."""
        result: dict[str, Any] = {"model": self.model, "prompt_version": self.prompt_version}
        try:
            raw = self._complete(self.messages(question, references, prediction))
        except _Failure as failure:
            return {**result, "raw": failure.raw, "error": f"{failure.kind}: {failure.message}"}
        try:
            verdict = parse_verdict(raw)
        except VerdictError as exc:
            return {**result, "raw": raw, "error": f"unparseable: {exc}"}
        return {**result, "raw": raw, "correct": verdict.correct, "score": verdict.score}

    def _complete(self, messages: list[dict[str, str]]) -> str:
        key = os.environ.get(self.api_key_env)
        register(key)  # a judge built without `check` (a replay, a test) scrubs it too
        payload = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        response = self._post(payload, key)
        if response.status_code >= 400:
            message = scrub(_error_message(response))
            raise _Failure("http_error", f"{response.status_code} {message}")
        try:
            body = response.json()
        except ValueError:
            snippet = scrub(response.text[:200])
            raise _Failure("invalid_response", f"body is not JSON: {snippet!r}") from None
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise _Failure(
                "invalid_response", "no choices[0].message.content in the body"
            ) from None
        if not isinstance(content, str):
            raise _Failure("invalid_response", f"message content is {type(content).__name__}")
        return content

    def _post(self, payload: dict[str, Any], key: str | None) -> httpx.Response:
        """POST, retrying 429, 5xx and transport errors; the last response or a failure."""
        import httpx  # here, not at the top: the commands that only read runs never need it

        url = f"{self.base_url.rstrip('/')}/chat/completions"
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(timeout=self.timeout) as client:
            attempt = 0
            while True:
                try:
                    response = client.post(url, json=payload, headers=headers)
                except httpx.TransportError as exc:
                    if attempt >= self.max_retries:
                        message = f"{type(exc).__name__}: {scrub(str(exc))}"
                        raise _Failure("transport_error", message) from None
                    delay = _backoff(attempt)
                except httpx.HTTPError as exc:
                    message = f"{type(exc).__name__}: {scrub(str(exc))}"
                    raise _Failure("http_error", message) from None
                else:
                    if attempt >= self.max_retries or not _retryable(response.status_code):
                        return response
                    delay = retry_delay(response, attempt)
                time.sleep(delay)
                attempt += 1


def parse_verdict(text: str) -> Verdict:
    """Read `{'pred': 'yes'|'no', 'score': N}` from a judge's output.

    The dict may be JSON or a Python literal, in a code fence or among other text.
    'pred' is yes or no (any case); 'score' a number (or numeric string) from 0 to 5.
    Raises `VerdictError` when there is no such dict, when one is invalid, or when
    the output holds dicts that disagree.
    """
    verdicts: set[Verdict] = set()
    problems: list[str] = []
    for candidate in _DICT.findall(text):
        data = _literal(candidate)
        if not isinstance(data, dict):
            continue
        fields = {str(k).strip().lower(): v for k, v in data.items()}
        if "pred" not in fields and "score" not in fields:
            continue
        try:
            verdicts.add(_verdict(fields))
        except VerdictError as exc:
            problems.append(str(exc))
    if problems:
        raise VerdictError(problems[0])
    if not verdicts:
        raise VerdictError("no {'pred': ..., 'score': ...} dict in the output")
    if len(verdicts) > 1:
        raise VerdictError("the output holds verdicts that disagree")
    return verdicts.pop()


def retry_delay(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait before retrying: the server's `retry-after-ms` or `Retry-After`
    (seconds or an HTTP date) when given, otherwise exponential backoff."""
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return _capped(float(headers["retry-after-ms"]) / 1000)
        if "retry-after" in headers:
            value = headers["retry-after"]
            try:
                return _capped(float(value))
            except ValueError:
                return _capped(parsedate_to_datetime(value).timestamp() - time.time())
    except (ValueError, TypeError):
        pass
    return _backoff(attempt)


def _verdict(fields: dict[str, Any]) -> Verdict:
    pred, score = fields.get("pred"), fields.get("score")
    if not isinstance(pred, str) or pred.strip().lower() not in ("yes", "no"):
        raise VerdictError(f"'pred' must be 'yes' or 'no', got {pred!r}")
    if isinstance(score, bool) or not isinstance(score, int | float | str):
        raise VerdictError(f"'score' must be a number, got {score!r}")
    try:
        value = float(score)
    except ValueError:
        raise VerdictError(f"'score' must be a number, got {score!r}") from None
    if not (math.isfinite(value) and 0 <= value <= MAX_SCORE):
        raise VerdictError(f"'score' must be between 0 and {MAX_SCORE:g}, got {score!r}")
    return Verdict(correct=pred.strip().lower() == "yes", score=value)


def _literal(text: str) -> Any:
    """The value of a JSON or Python literal, trying typographic quotes as plain ones."""
    for variant in dict.fromkeys((text, text.translate(_QUOTES))):
        try:
            return json.loads(variant)
        except ValueError:
            pass
        try:
            return ast.literal_eval(variant)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return None


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter, so concurrent samples do not retry in step."""
    return _capped(_BACKOFF_BASE * 2**attempt * random.uniform(0.5, 1.0))


def _capped(seconds: float) -> float:
    return min(max(seconds, 0.0), _MAX_DELAY)


def _error_message(response: httpx.Response) -> str:
    """The reason phrase and the API's `error.message` (OpenAI's error shape) if any."""
    reason = response.reason_phrase
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return reason
    if isinstance(error, dict) and error.get("message"):
        return f"{reason}: {error['message']}"
    if isinstance(error, str):
        return f"{reason}: {error}"
    return reason
