"""Micro-batching across chats in `bot.inference.Inference`, with the tiny real models.

`Counting` records the size of every batch the pipeline is asked for, so a test can see how
many model calls the requests became; everything else is the real pipeline.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from bot.inference import Inference
from core.config import Settings
from core.errors import BadImageError, BadTextError, ConfigError
from core.pipeline import IMAGE, MANUAL, Pipeline
from tests.pictures import picture

PHOTOS = [picture(color=(40 * n, 255 - 40 * n, 90)) for n in range(6)]


class Counting(Pipeline):
    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(pipeline.captioner, pipeline.classifier)
        self.captions: list[int] = []
        self.classifications: list[int] = []

    def caption(self, images):
        self.captions.append(len(images))
        return super().caption(images)

    def caption_each(self, images):
        self.captions.append(len(images))
        return super().caption_each(images)

    def classify(self, caption, text, *, caption_source=MANUAL):
        self.classifications.append(1)
        return super().classify(caption, text, caption_source=caption_source)

    def classify_many(self, requests):
        self.classifications.append(len(requests))
        return super().classify_many(requests)


class SaysNothingFirst:
    """The real captioner, except that the first image of each call gets an empty caption."""

    def __init__(self, captioner) -> None:
        self.captioner = captioner
        self.seen: list[int] = []

    @property
    def input_size(self) -> int:
        return self.captioner.input_size

    def __call__(self, images):
        self.seen.append(len(images))
        return ["", *self.captioner(images[1:])]


@pytest.fixture(scope="module")
def pipeline(tiny_models) -> Pipeline:
    settings = Settings.from_env(
        {
            "CAPTION_MODEL": str(tiny_models.caption),
            "SENTIMENT_MODEL": str(tiny_models.sentiment),
            "MODEL_PRECISION": "fp32",
        },
        dotenv_path=None,
    )
    return Pipeline.from_settings(settings)


@pytest.fixture
def counting(pipeline) -> Counting:
    return Counting(pipeline)


def inference(pipeline: Pipeline, window_ms: float = 50, max_batch: int = 8) -> Inference:
    return Inference(pipeline, 32, batch_window_ms=window_ms, max_batch=max_batch)


async def test_captions_within_the_window_are_one_model_call_and_reach_their_callers(
    pipeline, counting
):
    alone = [pipeline.caption([photo])[0] for photo in PHOTOS[:4]]
    service = inference(counting)
    try:
        captions = await asyncio.gather(*(service.caption(photo) for photo in PHOTOS[:4]))
    finally:
        service.close()
    assert counting.captions == [4]
    assert captions == alone


async def test_classifications_are_batched_together_and_split_back(pipeline, counting):
    asks = [("a red door", "I love it", IMAGE), ("a grey sky", "so sad", MANUAL)]
    asks.append(("a dog", "fine, I guess", IMAGE))
    alone = [pipeline.classify(c, t, caption_source=s) for c, t, s in asks]
    service = inference(counting)
    try:
        analyses = await asyncio.gather(*(service.classify(*ask) for ask in asks))
    finally:
        service.close()
    assert counting.classifications == [3]
    assert [(a.caption, a.text, a.caption_source) for a in analyses] == [
        (c, t, s) for c, t, s in asks
    ]
    for batched, single in zip(analyses, alone, strict=True):
        assert batched.combined == single.combined
        for name in ("sentiment", "caption_sentiment", "text_sentiment"):
            assert getattr(batched, name).label == getattr(single, name).label
            assert getattr(batched, name).score == pytest.approx(getattr(single, name).score)


async def test_a_batch_holds_at_most_max_batch_requests(counting):
    service = inference(counting, window_ms=200, max_batch=3)
    try:
        captions = await asyncio.gather(*(service.caption(PHOTOS[n % 6]) for n in range(7)))
    finally:
        service.close()
    assert sorted(counting.captions, reverse=True) == [3, 3, 1]
    assert len(captions) == 7 and all(captions)


async def test_window_zero_is_one_model_call_per_request(counting):
    service = inference(counting, window_ms=0)
    try:
        await asyncio.gather(*(service.caption(photo) for photo in PHOTOS[:3]))
        await asyncio.gather(*(service.classify("a lake", t, MANUAL) for t in ("calm", "cold")))
    finally:
        service.close()
    assert counting.captions == [1, 1, 1]
    assert counting.classifications == [1, 1]


async def test_a_bad_image_fails_only_its_own_request(pipeline, counting):
    service = inference(counting)
    try:
        good, bad, empty, other = await asyncio.gather(
            service.caption(PHOTOS[0]),
            service.caption(b"not an image at all"),
            service.caption(b""),
            service.caption(PHOTOS[1]),
            return_exceptions=True,
        )
    finally:
        service.close()
    assert counting.captions == [4]
    assert (good, other) == tuple(pipeline.caption([photo])[0] for photo in PHOTOS[:2])
    assert isinstance(bad, BadImageError) and "not an image" in str(bad)
    assert isinstance(empty, BadImageError) and "empty" in str(empty)


async def test_an_empty_caption_fails_only_that_photo(pipeline):
    says_nothing = SaysNothingFirst(pipeline.captioner)
    service = inference(Pipeline(says_nothing, pipeline.classifier))
    try:
        first, second, third = await asyncio.gather(
            *(service.caption(photo) for photo in PHOTOS[:3]), return_exceptions=True
        )
    finally:
        service.close()
    assert says_nothing.seen == [3]
    assert isinstance(first, BadImageError) and "could not describe" in str(first)
    assert isinstance(second, str) and isinstance(third, str) and second and third


async def test_an_empty_text_fails_only_its_own_classification(counting):
    service = inference(counting)
    try:
        empty, fine = await asyncio.gather(
            service.classify("a lake", "   ", MANUAL),
            service.classify("a lake", "calm", MANUAL),
            return_exceptions=True,
        )
    finally:
        service.close()
    assert counting.classifications == [2]
    assert isinstance(empty, BadTextError)
    assert fine.text == "calm" and fine.sentiment.label


class Broken:
    input_size = 384

    def __call__(self, images):
        raise RuntimeError("the model fell over")


async def test_a_model_failure_reaches_every_request_of_its_batch(pipeline):
    service = inference(Pipeline(Broken(), pipeline.classifier))
    try:
        results = await asyncio.gather(
            *(service.caption(photo) for photo in PHOTOS[:2]), return_exceptions=True
        )
    finally:
        service.close()
    assert [type(result) for result in results] == [RuntimeError, RuntimeError]


async def test_freed_memory_goes_back_once_no_model_call_is_left(pipeline):
    released_on: list[str] = []  # the thread that released, each time

    def release() -> None:
        released_on.append(threading.current_thread().name)

    service = Inference(pipeline, 32, batch_window_ms=0, on_idle=release)
    try:
        captions = await asyncio.gather(*(service.caption(photo) for photo in PHOTOS[:3]))
        await service.classify(captions[0], "what a day", IMAGE)
    finally:
        service.close()
    # Three captions in one burst, then one classification: twice idle, on the model thread.
    assert len(released_on) == 2
    assert all(name.startswith("inference") for name in released_on)


def test_batching_settings():
    default = Settings.from_env({}, dotenv_path=None)
    assert (
        (default.batch_window_ms, default.max_batch)
        == (20.0, 8)
        == (
            Settings().batch_window_ms,
            Settings().max_batch,
        )
    )
    off = Settings.from_env({"BATCH_WINDOW_MS": "0"}, dotenv_path=None)
    assert off.batch_window_ms == 0
    settings = Settings.from_env({"BATCH_WINDOW_MS": "25", "MAX_BATCH": "4"}, dotenv_path=None)
    assert (settings.batch_window_ms, settings.max_batch) == (25.0, 4)
    for name, value in [
        ("BATCH_WINDOW_MS", "-1"),
        ("BATCH_WINDOW_MS", "soon"),
        ("BATCH_WINDOW_MS", "nan"),
        ("MAX_BATCH", "0"),
        ("MAX_BATCH", "2.5"),
    ]:
        with pytest.raises(ConfigError, match=f"{name}='{value}' is not accepted"):
            Settings.from_env({name: value}, dotenv_path=None)


class PoisonedBy:
    """The real classifier, except that a call holding `poison` in any text raises."""

    def __init__(self, classifier, poison: str) -> None:
        self.classifier = classifier
        self.poison = poison
        self.calls: list[int] = []

    def __call__(self, texts):
        self.calls.append(len(texts))
        if any(self.poison in text for text in texts):
            raise ValueError("the tokenizer choked")
        return self.classifier(texts)


async def test_one_poisoned_request_fails_only_itself_not_its_batch(pipeline):
    poisoned = PoisonedBy(pipeline.classifier, "poison")
    service = inference(Pipeline(pipeline.captioner, poisoned))
    asks = [("a red door", "I love it"), ("a grey sky", "poison"), ("a dog", "so sad")]
    try:
        results = await asyncio.gather(
            *(service.classify(c, t, MANUAL) for c, t in asks), return_exceptions=True
        )
    finally:
        service.close()
    assert poisoned.calls == [9, 3, 3, 3]  # the batch, then each request alone
    first, bad, last = results
    assert isinstance(bad, ValueError)
    assert (first.text, last.text) == ("I love it", "so sad")
    assert first == pipeline.classify("a red door", "I love it")
