"""Stages 2 and 4 on Hugging Face's servers, with the same call shape as the local models.

`CAPTION_BACKEND=api` gives the pipeline a `RemoteCaptioner` instead of `Captioner`, and
`SENTIMENT_BACKEND=api` a `RemoteClassifier` instead of `SentimentClassifier`: images in,
captions out; texts in, `Sentiment`s out (labels lowercased, every class score the service
returns kept). Both call huggingface_hub's `InferenceClient` (`image_to_text`,
`text_classification`) with `HF_TOKEN`, on an Inference Endpoint URL or, without one, on the
model id through HF Inference (the serverless API). Nothing here imports torch or
transformers.

Every request goes through `_Service.call`, which turns each way a remote call can fail into
one `_Failure`:
- 503 (model loading, with `estimated_time`), 429 (rate limit), 502/504 and a network error
  are retried with bounded backoff (`Backoff`), then give "busy";
- a timeout (`INFERENCE_TIMEOUT_SECONDS`) is not retried: one wait is long enough;
- 401/403, 404, any other status and an answer we cannot read fail at once.
`connect()` makes one cheap request at start, so a bad token or model id stops the program
there (a model that is only busy lets it start); later failures reach the person as a
`ModelServiceError` with a short message, and are never recorded as a label.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2
from huggingface_hub import InferenceClient
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    InferenceTimeoutError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)
from PIL import Image

from core.errors import ModelAuthError, ModelBusyError, ModelLoadError, ModelServiceError
from core.sentiment_base import Sentiment, preprocess_tweet

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Shorter side, in pixels, that BLIP (base and large) sees; photos are sent no bigger.
BLIP_INPUT_SIZE = 384
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Parallel requests per call: a classification is three texts, one request each.
MAX_PARALLEL_REQUESTS = 4

BUSY = "The model service is busy, try again in a minute."


@dataclass(frozen=True)
class Backoff:
    """How often to ask again after "not now", and how long to wait in between.

    The wait doubles from `first_delay`, or follows the server's own hint (`Retry-After`, or
    `estimated_time` while a model loads), never beyond `max_delay`; so one call waits at
    most (attempts - 1) × max_delay on top of its requests. `sleep` is injectable for tests.
    """

    attempts: int = 4
    first_delay: float = 1.0
    max_delay: float = 10.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, retry: int, hint: float | None) -> float:
        wanted = self.first_delay * 2**retry if hint is None else hint
        return min(max(wanted, 0.0), self.max_delay)


@dataclass(frozen=True)
class _Names:
    """The settings an operator would change, for messages that say what to fix."""

    backend: str
    model: str
    endpoint: str


CAPTION = _Names("CAPTION_BACKEND", "CAPTION_MODEL", "CAPTION_ENDPOINT")
SENTIMENT = _Names("SENTIMENT_BACKEND", "SENTIMENT_MODEL", "SENTIMENT_ENDPOINT")

# _Failure kinds
AUTH, NOT_FOUND, BUSY_KIND, TIMEOUT, UNREACHABLE, OFFLINE, MALFORMED, HTTP = (
    "auth",
    "not found",
    "busy",
    "timeout",
    "unreachable",
    "offline",
    "malformed",
    "http",
)


class _Failure(Exception):
    """One failed remote call, before we decide who is told what."""

    def __init__(
        self, kind: str, detail: str, *, status: int | None = None, hint: float | None = None
    ) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.status, self.hint = kind, detail, status, hint


class _Service:
    """One model behind one `InferenceClient`, and the rules for calling it."""

    def __init__(
        self,
        model: str,
        *,
        endpoint: str,
        token: str | None,
        timeout: float,
        backoff: Backoff,
        names: _Names,
        task: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.endpoint = endpoint
        self.where = endpoint or f"{model} on HF Inference"
        self.timeout = timeout
        self.backoff = backoff
        self.names = names
        self.task = task
        # A URL is posted to as it is; a model id goes to router.huggingface.co/hf-inference.
        self.client = InferenceClient(
            model=endpoint or model,
            provider="hf-inference",
            token=token,
            timeout=timeout,
            headers=headers,
        )

    def call(self, send: Callable[[InferenceClient], T], *, attempts: int | None = None) -> T:
        """`send(client)`, asked again after "not now" answers; every failure is a `_Failure`."""
        attempts = self.backoff.attempts if attempts is None else attempts
        for retry in range(max(attempts, 1)):
            try:
                return send(self.client)
            except _Failure:
                raise
            except Exception as error:
                failure = self._classify(error)
            if failure.kind not in (BUSY_KIND, UNREACHABLE) or retry + 1 >= attempts:
                raise failure
            delay = self.backoff.delay(retry, failure.hint)
            log.warning(
                "%s: %s; asking again in %.1f s (%d/%d)",
                self.where,
                failure.detail,
                delay,
                retry + 1,
                attempts - 1,
            )
            self.backoff.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _classify(self, error: Exception) -> _Failure:
        if isinstance(error, InferenceTimeoutError):
            return _Failure(TIMEOUT, f"no answer within {self.timeout:g} s")
        if isinstance(error, OfflineModeIsEnabled):
            return _Failure(OFFLINE, "HF_HUB_OFFLINE is set")
        if isinstance(error, GatedRepoError):
            return _Failure(AUTH, "the model is gated", status=_status(error))
        if isinstance(error, RepositoryNotFoundError):
            return _Failure(NOT_FOUND, "no such model", status=_status(error))
        if isinstance(error, HFValidationError):
            return _Failure(NOT_FOUND, f"not a model id: {_first_line(error)}")
        if isinstance(error, HfHubHTTPError):
            status = _status(error)
            detail = f"HTTP {status}: {_server_message(error)}"
            if status in (401, 403):
                return _Failure(AUTH, detail, status=status)
            if status == 404:
                return _Failure(NOT_FOUND, detail, status=status)
            if status in RETRY_STATUSES:
                return _Failure(BUSY_KIND, detail, status=status, hint=_wait_hint(error))
            return _Failure(HTTP, detail, status=status)
        if isinstance(error, httpx2.TransportError):
            return _Failure(UNREACHABLE, f"{type(error).__name__}: {error}")
        if isinstance(error, (ValueError, TypeError, KeyError, IndexError, AttributeError)):
            # JSONDecodeError is a ValueError; so is huggingface_hub's "Expected a list".
            return _Failure(MALFORMED, f"unreadable answer ({_first_line(error)})")
        raise error

    def for_person(self, failure: _Failure) -> ModelServiceError:
        """What the person who sent the photo or text is told; the log gets the detail."""
        log.log(
            logging.WARNING if failure.kind in (BUSY_KIND, TIMEOUT) else logging.ERROR,
            "%s failed: %s",
            self.where,
            failure.detail,
        )
        if failure.kind == BUSY_KIND:
            return ModelBusyError(BUSY)
        if failure.kind == TIMEOUT:
            return ModelBusyError(
                f"The model service did not answer within {self.timeout:g} s, "
                "try again in a minute."
            )
        if failure.kind == UNREACHABLE:
            return ModelBusyError("The model service cannot be reached, try again in a minute.")
        if failure.kind == AUTH:
            return ModelAuthError(
                f"The model service refused this bot's access (HTTP {failure.status}): "
                "the bot's operator has to check HF_TOKEN."
            )
        if failure.kind == MALFORMED:
            return ModelServiceError(
                "The model service sent an answer I could not read, try again later."
            )
        if failure.kind == OFFLINE:
            return ModelServiceError(
                "The model service is switched off here (HF_HUB_OFFLINE): "
                "the bot's operator has to unset it."
            )
        if failure.status is not None and 400 <= failure.status < 500:
            return ModelServiceError(
                f"The model service refused this input (HTTP {failure.status}); "
                "a shorter message may help."
            )
        return ModelServiceError(
            f"The model service failed (HTTP {failure.status}), try again later."
        )

    def for_operator(self, failure: _Failure) -> ModelLoadError:
        """Why the program cannot start, and what to change."""
        names, where = self.names, self.where
        start = f"{names.backend}=api: {where}"
        if failure.kind == AUTH:
            fix = (
                "set HF_TOKEN to a Hugging Face token allowed to call it "
                "(a fine-grained token needs 'Make calls to Inference Providers')"
            )
            if self.endpoint:
                fix = "set HF_TOKEN to a token of an account with access to this endpoint"
            return ModelLoadError(f"{start} refused the token ({failure.detail}). Fix: {fix}.")
        if failure.kind == NOT_FOUND:
            return ModelLoadError(
                f"{start} has no such model ({failure.detail}). Fix: check {names.model}, "
                f"or deploy the model on an Inference Endpoint and put its URL in "
                f"{names.endpoint} (HF Inference serves only some models; BLIP is not one)."
            )
        if failure.kind == OFFLINE:
            return ModelLoadError(
                f"{names.backend}=api needs the network, but HF_HUB_OFFLINE is set. "
                f"Fix: unset HF_HUB_OFFLINE, or set {names.backend}=local."
            )
        if failure.kind == UNREACHABLE:
            return ModelLoadError(
                f"{start} cannot be reached ({failure.detail}). "
                f"Fix: check {names.endpoint if self.endpoint else names.model} and the network."
            )
        if failure.kind == MALFORMED:
            return ModelLoadError(
                f"{start} cannot be used as a {self.task} model ({failure.detail}). "
                f"Fix: point {names.endpoint if self.endpoint else names.model} at a "
                f"{self.task} model."
            )
        return ModelLoadError(f"{start} failed ({failure.detail}).")

    def check(self, send: Callable[[InferenceClient], Any]) -> None:
        """One request, no retries: stops on a bad token or model, starts on "busy"."""
        started = time.perf_counter()
        try:
            self.call(send, attempts=1)
        except _Failure as failure:
            if failure.kind in (BUSY_KIND, TIMEOUT):
                log.warning(
                    "%s is not ready (%s); starting anyway, the first requests may wait",
                    self.where,
                    failure.detail,
                )
                return
            raise self.for_operator(failure) from None
        log.info("%s answered in %.1f s", self.where, time.perf_counter() - started)


class RemoteCaptioner:
    """`Captioner`'s call shape over `InferenceClient.image_to_text`."""

    def __init__(self, service: _Service, *, input_size: int = BLIP_INPUT_SIZE) -> None:
        self.service = service
        self._input_size = input_size

    @classmethod
    def connect(
        cls,
        model: str,
        *,
        endpoint: str = "",
        token: str | None = None,
        timeout: float = 30.0,
        backoff: Backoff = Backoff(),
        input_size: int = BLIP_INPUT_SIZE,
    ) -> RemoteCaptioner:
        """Build the client and check it with one small picture; a bad token stops here."""
        service = _Service(
            model,
            endpoint=endpoint,
            token=token,
            timeout=timeout,
            backoff=backoff,
            names=CAPTION,
            task="image-to-text",
            # Photos go as JPEG bytes; without this, no Content-Type is sent.
            headers={"Content-Type": "image/jpeg"},
        )
        captioner = cls(service, input_size=input_size)
        probe = Image.new("RGB", (64, 64), (128, 128, 128))
        service.check(lambda client: client.image_to_text(_jpeg(probe, input_size)))
        return captioner

    @property
    def input_size(self) -> int:
        """Shorter side, in pixels, that the model sees; larger photos only cost upload time."""
        return self._input_size

    def __call__(self, images: Sequence[Image.Image]) -> list[str]:
        try:
            return _in_parallel(self._caption, images)
        except _Failure as failure:
            raise self.service.for_person(failure) from None

    def _caption(self, image: Image.Image) -> str:
        data = _jpeg(image, self._input_size)
        output = self.service.call(lambda client: client.image_to_text(data))
        text = getattr(output, "generated_text", None)
        if not isinstance(text, str):
            raise _Failure(MALFORMED, f"no generated_text in {_short(output)}")
        return " ".join(text.split())


class RemoteClassifier:
    """`SentimentClassifier`'s call shape over `InferenceClient.text_classification`."""

    def __init__(self, service: _Service) -> None:
        self.service = service

    @classmethod
    def connect(
        cls,
        model: str,
        *,
        endpoint: str = "",
        token: str | None = None,
        timeout: float = 30.0,
        backoff: Backoff = Backoff(),
    ) -> RemoteClassifier:
        """Build the client and check it with one short text; a bad token stops here."""
        service = _Service(
            model,
            endpoint=endpoint,
            token=token,
            timeout=timeout,
            backoff=backoff,
            names=SENTIMENT,
            task="text-classification",
        )
        classifier = cls(service)
        service.check(lambda client: _sentiment(client.text_classification("hello")))
        return classifier

    def __call__(self, texts: Sequence[str]) -> list[Sentiment]:
        try:
            return _in_parallel(self._classify, texts)
        except _Failure as failure:
            raise self.service.for_person(failure) from None

    def _classify(self, text: str) -> Sentiment:
        prepared = preprocess_tweet(text)
        return self.service.call(lambda client: _sentiment(client.text_classification(prepared)))


def _sentiment(output: Any) -> Sentiment:
    """The service's classes as our `Sentiment`: labels lowercased, every score kept.

    HF Inference answers `[[{label, score}, ...]]`, which InferenceClient hands over as a list;
    a service answering a flat list reaches us as its first element alone.
    """
    elements = output if isinstance(output, list) else [output]
    scores: dict[str, float] = {}
    for element in elements:
        label, score = getattr(element, "label", None), getattr(element, "score", None)
        if not isinstance(label, str) or not label.strip() or not _is_probability(score):
            raise _Failure(MALFORMED, f"not a label and a score: {_short(element)}")
        scores[label.strip().lower()] = float(score)
    if not scores:
        raise _Failure(MALFORMED, "no classes in the answer")
    best = max(scores, key=scores.__getitem__)
    return Sentiment(label=best, score=scores[best], scores=scores)


def _is_probability(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    )


def _in_parallel(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """One request per item, a few at a time; results in the items' order."""
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(min(len(items), MAX_PARALLEL_REQUESTS)) as pool:
        return list(pool.map(work, items))


def _jpeg(image: Image.Image, side: int) -> bytes:
    """The photo as JPEG, shorter side cut to what the model sees: a small upload, same input."""
    image = image.convert("RGB")
    shorter = min(image.size)
    if shorter > side:
        scale = side / shorter
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95)
    return out.getvalue()


def _status(error: HfHubHTTPError) -> int | None:
    return error.response.status_code if error.response is not None else None


def _body(error: HfHubHTTPError) -> Any:
    try:
        return error.response.json()
    except (ValueError, AttributeError, httpx2.HTTPError):
        return None


def _server_message(error: HfHubHTTPError) -> str:
    body = _body(error)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"][:200]
    return _first_line(error)


def _wait_hint(error: HfHubHTTPError) -> float | None:
    """Seconds the server asks us to wait: `Retry-After`, or a loading model's estimate."""
    retry_after = error.response.headers.get("retry-after") if error.response is not None else None
    body = _body(error)
    for value in (retry_after, body.get("estimated_time") if isinstance(body, dict) else None):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _short(value: object) -> str:
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text[:120]
