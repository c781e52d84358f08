"""`python -m core serve`: the two models as Ray Serve deployments, over Hugging Face's protocol.

The captioner and the sentiment classifier are two deployments, each its own application with
its own route and replica count (`SERVE_CAPTION_REPLICAS`, `SERVE_SENTIMENT_REPLICAS`); where
the cluster has GPUs, each replica takes `SERVE_REPLICA_GPUS` of one. A replica loads its model
with `Captioner.from_pretrained` or `SentimentClassifier.from_pretrained` in the configured
precision, and `@serve.batch` gathers concurrent requests into one model call with the bot's
own micro-batching settings (`MAX_BATCH`, `BATCH_WINDOW_MS`).

They answer as Hugging Face Inference Endpoints do, so that the bot's `api` backends
(`core.remote`) use them unchanged, with `CAPTION_ENDPOINT=http://HOST:PORT/caption` and
`SENTIMENT_ENDPOINT=http://HOST:PORT/sentiment`:
- `POST /caption` (image-to-text): the image's bytes, or JSON `{"inputs": base64}` →
  `[{"generated_text": caption}]`;
- `POST /sentiment` (text-classification): `{"inputs": text}` → `[[{"label", "score"}, ...]]`,
  every class, best first (a list of texts gets one such list each; `parameters.top_k` keeps
  the best k).
An input the model cannot take is a 400 with `{"error": message}`, and fails no other request.
There is no authentication: the port belongs on a private network.

This is the only module that imports Ray; nothing imports it but `python -m core serve` (and
KubeRay, through `caption_builder` and `sentiment_builder`), so the bot runs without Ray.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import ray
from PIL import Image
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse

from core.config import Settings
from core.errors import BadImageError, CoreError
from core.images import load_image
from core.sentiment_base import Sentiment

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Callable[[list[Any]], list[Any]])

CAPTION, SENTIMENT = "caption", "sentiment"
# As Telegram lets a bot download: more is not a photo anyone sent.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# The decorators' values until each replica sets its own (`_batch_as`).
_DEFAULTS = Settings()
_WINDOW_S = _DEFAULTS.batch_window_ms / 1000


class BadRequest(Exception):
    """The request itself is wrong; its message goes back with `status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _ModelThread(Generic[M]):
    """A model loaded, warmed up and called on one thread of its own, off the event loop:
    torch run from a second thread slows every later call (docs/performance.md)."""

    def __init__(self, load: Callable[[], M]) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._model = self._thread.submit(load).result()
        self.batch_sizes: list[int] = []

    async def __call__(self, items: list[Any]) -> list[Any]:
        self.batch_sizes.append(len(items))
        log.debug("a batch of %d", len(items))
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._model, items)


@serve.deployment
class CaptionDeployment:
    """image-to-text, as an Inference Endpoint answers it."""

    def __init__(self, settings: Settings) -> None:
        settings.configure_logging()
        self._model = _ModelThread(lambda: _load_captioner(settings))
        _batch_as(self.caption_batch, settings)

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            data = _image_bytes(await _body(request))
            image = await asyncio.to_thread(load_image, data)  # a decode is heavy work too
        except BadRequest as error:
            return _error(error.status, str(error))
        except BadImageError as error:
            return _error(400, str(error))
        try:
            caption = await self.caption_batch(image)
        except Exception:  # the whole batch failed: each of its requests says so
            log.exception("Captioning failed")
            return _error(500, "The caption model failed, try again later.")
        return JSONResponse([{"generated_text": caption}])

    @serve.batch(max_batch_size=_DEFAULTS.max_batch, batch_wait_timeout_s=_WINDOW_S)
    async def caption_batch(self, images: list[Image.Image]) -> list[str]:
        return await self._model(images)

    def batch_sizes(self) -> list[int]:
        """Images per model call, in order, in this replica (for tests and operators)."""
        return list(self._model.batch_sizes)


@serve.deployment
class SentimentDeployment:
    """text-classification, as an Inference Endpoint answers it."""

    def __init__(self, settings: Settings) -> None:
        settings.configure_logging()
        self._model = _ModelThread(lambda: _load_classifier(settings))
        _batch_as(self.classify_batch, settings)

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            texts, top_k = _texts(await _body(request))
        except BadRequest as error:
            return _error(error.status, str(error))
        try:
            sentiments = await asyncio.gather(*map(self.classify_batch, texts))
        except Exception:
            log.exception("Classification failed")
            return _error(500, "The sentiment model failed, try again later.")
        return JSONResponse([_ranked(sentiment)[:top_k] for sentiment in sentiments])

    @serve.batch(max_batch_size=_DEFAULTS.max_batch, batch_wait_timeout_s=_WINDOW_S)
    async def classify_batch(self, texts: list[str]) -> list[Sentiment]:
        return await self._model(texts)

    def batch_sizes(self) -> list[int]:
        """Texts per model call, in order, in this replica (for tests and operators)."""
        return list(self._model.batch_sizes)


def caption_app(settings: Settings, gpus: float = 0.0) -> Application:
    """The caption deployment with its replicas and resources, ready for `serve.run`."""
    return _sized(CaptionDeployment, settings, settings.serving.caption_replicas, gpus)


def sentiment_app(settings: Settings, gpus: float = 0.0) -> Application:
    """The sentiment deployment with its replicas and resources, ready for `serve.run`."""
    return _sized(SentimentDeployment, settings, settings.serving.sentiment_replicas, gpus)


def caption_builder(args: dict[str, str]) -> Application:
    """`import_path: core.serve:caption_builder` (a KubeRay RayService's serveConfigV2):
    settings from the environment of the cluster."""
    settings = Settings.from_env()
    return caption_app(settings, _gpus(settings))


def sentiment_builder(args: dict[str, str]) -> Application:
    """`import_path: core.serve:sentiment_builder`, as `caption_builder`."""
    settings = Settings.from_env()
    return sentiment_app(settings, _gpus(settings))


def deploy(settings: Settings) -> dict[str, DeploymentHandle]:
    """Both applications on the Ray cluster this process is connected to (`ray.init`), behind
    Serve's HTTP proxy on SERVE_HOST:SERVE_PORT; their handles by route name."""
    gpus = _gpus(settings)
    serve.start(http_options={"host": settings.serving.host, "port": settings.serving.port})
    apps = {CAPTION: caption_app(settings, gpus), SENTIMENT: sentiment_app(settings, gpus)}
    handles = {}
    for name, app in apps.items():
        try:
            handles[name] = serve.run(app, name=name, route_prefix=f"/{name}")
        except RuntimeError as error:  # its replicas could not start: a model that fails to load
            raise CoreError(
                f"Ray Serve could not start the {name} deployment ({error}); its replica's "
                "error, e.g. a model that cannot be loaded, is in the log above."
            ) from None
    return handles


def serve_forever(settings: Settings, address: str | None) -> None:
    """Join the cluster at `address` (None: a Ray of this process's own), deploy, and serve
    until SIGINT or SIGTERM; then the applications are taken down."""
    try:
        ray.init(address=address)
    except ConnectionError as error:
        raise CoreError(
            f"No Ray cluster at {address}: start one with `ray start --head`, "
            f"or leave out --address to run Ray in this process ({error})."
        ) from None
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    try:
        deploy(settings)
        where = f"http://{settings.serving.host}:{settings.serving.port}"
        log.info("Serving %s/%s and %s/%s; Ctrl-C stops", where, CAPTION, where, SENTIMENT)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


def _sized(deployment: Any, settings: Settings, replicas: int, gpus: float) -> Application:
    return deployment.options(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": settings.serving.replica_cpus, "num_gpus": gpus},
        # Room for a full batch waiting while the one before it runs.
        max_ongoing_requests=2 * settings.max_batch,
    ).bind(settings)


def _gpus(settings: Settings) -> float:
    """A GPU share per replica where the cluster has GPUs, else none."""
    return settings.serving.replica_gpus if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _batch_as(batched: Any, settings: Settings) -> None:
    """The bot's micro-batching settings, in place of the decorator's defaults."""
    batched.set_max_batch_size(settings.max_batch)
    batched.set_batch_wait_timeout_s(settings.batch_window_ms / 1000)


def _load_captioner(settings: Settings) -> Callable[[list[Image.Image]], list[str]]:
    from core.captioner import Captioner

    captioner = Captioner.from_pretrained(
        settings.caption_model,
        generation=settings.generation,
        token=settings.hf_token,
        precision=settings.caption_precision,
    )
    size = captioner.input_size
    captioner([Image.new("RGB", (size, size), (128, 128, 128))])  # the one-time costs, now
    return captioner


def _load_classifier(settings: Settings) -> Callable[[list[str]], list[Sentiment]]:
    from core.sentiment import SentimentClassifier

    classifier = SentimentClassifier.from_pretrained(
        settings.sentiment_model,
        token=settings.hf_token,
        precision=settings.sentiment_precision,
        compile_dir=settings.compile_dir,
    )
    classifier(["a photo. a few words", "a photo", "a few words"])
    return classifier


async def _body(request: Request) -> bytes:
    if request.method != "POST":
        raise BadRequest(f"{request.method} is not served here: POST the input.", 405)
    body = await request.body()
    if len(body) > MAX_UPLOAD_BYTES:
        raise BadRequest(f"The input is over {MAX_UPLOAD_BYTES // 2**20} MiB.", 413)
    return body


def _image_bytes(body: bytes) -> bytes:
    """The raw image, or the base64 `inputs` of a JSON body (what InferenceClient sends when
    it has parameters); no image starts with "{"."""
    if not body.lstrip().startswith(b"{"):
        return body
    inputs = _json(body).get("inputs")
    if not isinstance(inputs, str):
        raise BadRequest("inputs must be the image, base64-encoded.")
    try:
        return base64.b64decode(inputs, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("inputs is not valid base64.") from None


def _texts(body: bytes) -> tuple[list[str], int | None]:
    """The texts to classify, and how many classes each answer keeps (None: all)."""
    payload = _json(body)
    inputs = payload.get("inputs")
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest("inputs must be a text or a list of texts.")
    top_k = (payload.get("parameters") or {}).get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise BadRequest("parameters.top_k must be a whole number from 1.")
    return texts, top_k


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise BadRequest("The body is not JSON.") from None
    if not isinstance(payload, dict):
        raise BadRequest('The body must be a JSON object with "inputs".')
    return payload


def _ranked(sentiment: Sentiment) -> list[dict[str, Any]]:
    ranked = sorted(sentiment.scores.items(), key=lambda item: item[1], reverse=True)
    return [{"label": label, "score": score} for label, score in ranked]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
