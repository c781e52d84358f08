"""The whole analysis: load image → caption → combine → classify, as one shared object.

Each model runs here (`local`: transformers, imported only then) or on Hugging Face's
servers (`api`: `core.remote`), as `CAPTION_BACKEND` / `SENTIMENT_BACKEND` say; both give
the same results, so nothing downstream can tell. Recording is left to the caller
(`RecordStore.append`), which knows who asked.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from core.combine import combine
from core.config import API, GenerationSettings, Settings
from core.errors import BadImageError, BadTextError
from core.hub import require_hub
from core.images import load_image
from core.records import Record
from core.sentiment_base import Sentiment
from core.text import clean_text

if TYPE_CHECKING:
    from core.precision import Hardware

IMAGE = "image"
MANUAL = "manual"


class CaptionModel(Protocol):
    """`core.captioner.Captioner` or `core.remote.RemoteCaptioner`."""

    @property
    def input_size(self) -> int: ...

    def __call__(self, images: Sequence[Image.Image]) -> list[str]: ...


class SentimentModel(Protocol):
    """`core.sentiment.SentimentClassifier` or `core.remote.RemoteClassifier`."""

    def __call__(self, texts: Sequence[str]) -> list[Sentiment]: ...


@dataclass(frozen=True)
class Analysis:
    caption: str
    caption_source: str
    text: str
    combined: str
    sentiment: Sentiment
    caption_sentiment: Sentiment
    text_sentiment: Sentiment

    def to_record(
        self, *, chat_id: int | None = None, user_id: int | None = None, at: datetime | None = None
    ) -> Record:
        return Record(
            image_caption=self.caption,
            user_text=self.text,
            combined_input=self.combined,
            label=self.sentiment.label,
            score=self.sentiment.score,
            timestamp=at or datetime.now(UTC),
            chat_id=chat_id,
            user_id=user_id,
            caption_source=self.caption_source,
        )


class Pipeline:
    def __init__(self, captioner: CaptionModel, classifier: SentimentModel) -> None:
        self.captioner = captioner
        self.classifier = classifier

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        """Models (or remote clients) are cached per process: callers with the same settings
        share them. torch and transformers are imported only for a local backend."""
        if settings.caption_backend == API:
            captioner = _remote_captioner(
                settings.caption_model,
                settings.caption_endpoint,
                settings.hf_token,
                settings.inference_timeout_seconds,
            )
        else:
            captioner = _captioner(
                settings.caption_model,
                settings.generation,
                settings.hf_token,
                settings.caption_precision,
                _Acceleration(settings.acceleration, settings.cpu_class),
            )
        if settings.sentiment_backend == API:
            classifier = _remote_classifier(
                settings.sentiment_model,
                settings.sentiment_endpoint,
                settings.hf_token,
                settings.inference_timeout_seconds,
            )
        else:
            classifier = _classifier(
                settings.sentiment_model,
                settings.hf_token,
                settings.sentiment_precision,
                settings.compile_dir,
                _Acceleration(settings.acceleration, settings.cpu_class),
            )
        return cls(captioner, classifier)

    def warm_up(self) -> float:
        """One tiny caption and one classification of three texts, so that the first person
        does not pay the one-time costs (kernel set-up, weight packing, thread pools).

        Call it once, before taking requests, on the thread that will run the models: torch
        run from a second thread slows every later call (docs/performance.md). With an `api`
        backend it makes one request per model. Returns the seconds it took.
        """
        started = time.perf_counter()
        size = self.captioner.input_size
        self.captioner([Image.new("RGB", (size, size), (128, 128, 128))])
        self.classifier(["a photo. a few words", "a photo", "a few words"])
        return time.perf_counter() - started

    def caption(self, images: Sequence[bytes | Image.Image]) -> list[str]:
        """Raises BadImageError before any model work if one of the files is not a usable image.

        An image already loaded (`load_image`, as the CLI checks it before the models load)
        is taken as it is."""
        captions = self.captioner([self._load(image) for image in images])
        if not all(captions):
            raise BadImageError(_NOT_DESCRIBED)
        return captions

    def caption_each(self, images: Sequence[bytes]) -> list[str | Exception]:
        """`caption` for several people's photos at once (micro-batching, `bot/inference.py`).

        Each file is loaded on its own, then every usable image goes through the model in one
        call. Loading keeps at most the model's size of each picture (`load_image`) and decodes
        one file at a time, so a batch never holds more than one full-size picture. A file's
        own failure (not an image, or nothing said about it) takes its place in the list, as
        with `asyncio.gather(return_exceptions=True)`, and fails no other file.
        """
        results: list[str | Exception] = []
        loaded: list[Image.Image] = []
        for data in images:
            try:
                loaded.append(self._load(data))
                results.append("")
            except Exception as error:  # this file's failure, its request's alone
                results.append(error)
        captions = iter(self.captioner(loaded) if loaded else [])
        return [
            result
            if isinstance(result, Exception)
            else (next(captions) or BadImageError(_NOT_DESCRIBED))
            for result in results
        ]

    def _load(self, image: bytes | Image.Image) -> Image.Image:
        if isinstance(image, Image.Image):
            return image
        return load_image(image, side=self.captioner.input_size)

    def classify(self, caption: str, text: str, *, caption_source: str = MANUAL) -> Analysis:
        """One batch of three: the verdict, and what the caption and text say on their own."""
        caption, text, combined = _texts(caption, text)
        overall, caption_only, text_only = self.classifier([combined, caption, text])
        return Analysis(caption, caption_source, text, combined, overall, caption_only, text_only)

    def classify_many(self, requests: Sequence[tuple[str, str, str]]) -> list[Analysis | Exception]:
        """`classify` for several `(caption, text, caption_source)` at once: the three texts of
        every valid request in one classifier call, split back per request. An empty caption or
        text is that request's BadTextError, in its place; the others are still classified."""
        results: list[Analysis | Exception | tuple[str, str, str, str]] = []
        batch: list[str] = []
        for caption, text, source in requests:
            try:
                caption, text, combined = _texts(caption, text)
            except BadTextError as error:
                results.append(error)
                continue
            results.append((caption, source, text, combined))
            batch += [combined, caption, text]
        sentiments = iter(self.classifier(batch) if batch else [])
        return [
            result
            if isinstance(result, Exception)
            else Analysis(*result, next(sentiments), next(sentiments), next(sentiments))
            for result in results
        ]

    def analyze(
        self, text: str, *, image: bytes | Image.Image | None = None, caption: str | None = None
    ) -> Analysis:
        if (image is None) == (caption is None):
            raise ValueError("give exactly one of image or caption")
        if image is not None:
            (caption,) = self.caption([image])
            return self.classify(caption, text, caption_source=IMAGE)
        return self.classify(caption, text, caption_source=MANUAL)


_NOT_DESCRIBED = "I could not describe this picture: try another one, or type a caption."


def _texts(caption: str, text: str) -> tuple[str, str, str]:
    """Caption, text and their combination, cleaned (`clean_text`) and stripped; BadTextError
    if either is empty."""
    caption, text = clean_text(caption).strip(), clean_text(text).strip()
    if not text:
        raise BadTextError("The text is empty: send a few words to go with the picture.")
    if not caption:
        raise BadTextError("The caption is empty: describe the picture in a few words.")
    return caption, text, combine(caption, text)


@dataclass(frozen=True)
class _Acceleration:
    """`ACCELERATION` and `MOOD_CPU_CLASS`: whether fast paths run, and on which CPU class."""

    on: bool
    cpu_class: str

    def hardware(self) -> Hardware:
        from core.precision import Hardware  # imports torch: local backend only

        return Hardware.detect(cpu_class=self.cpu_class)


@functools.cache
def _captioner(
    name: str,
    generation: GenerationSettings,
    token: str | None,
    precision: str,
    acceleration: _Acceleration,
) -> CaptionModel:
    require_hub(name, "CAPTION_MODEL")  # before the heavy imports, when the hub cannot help
    from core.captioner import Captioner  # torch and transformers: local backend only

    return Captioner.from_pretrained(
        name,
        generation=generation,
        token=token,
        precision=precision,
        hardware=acceleration.hardware(),
        accelerate=acceleration.on,
    )


@functools.cache
def _classifier(
    name: str,
    token: str | None,
    precision: str,
    compile_dir: Path | None,
    acceleration: _Acceleration,
) -> SentimentModel:
    require_hub(name, "SENTIMENT_MODEL")
    from core.sentiment import SentimentClassifier  # torch and transformers: local backend only

    return SentimentClassifier.from_pretrained(
        name,
        token=token,
        precision=precision,
        hardware=acceleration.hardware(),
        compile_dir=compile_dir,
        accelerate=acceleration.on,
    )


@functools.cache
def _remote_captioner(name: str, endpoint: str, token: str | None, timeout: float) -> CaptionModel:
    from core.remote import RemoteCaptioner

    return RemoteCaptioner.connect(name, endpoint=endpoint, token=token, timeout=timeout)


@functools.cache
def _remote_classifier(
    name: str, endpoint: str, token: str | None, timeout: float
) -> SentimentModel:
    from core.remote import RemoteClassifier

    return RemoteClassifier.connect(name, endpoint=endpoint, token=token, timeout=timeout)
