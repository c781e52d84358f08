"""The whole analysis: load image → caption → combine → classify, as one shared object.

Recording is left to the caller (`RecordStore.append`), which knows who asked.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from core.captioner import Captioner
from core.combine import combine
from core.config import GenerationSettings, Settings
from core.errors import BadImageError, BadTextError
from core.images import load_image
from core.records import Record
from core.sentiment import Sentiment, SentimentClassifier

IMAGE = "image"
MANUAL = "manual"


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
    def __init__(self, captioner: Captioner, classifier: SentimentClassifier) -> None:
        self.captioner = captioner
        self.classifier = classifier

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        """Models are cached per process: every caller with the same settings shares them."""
        return cls(
            _captioner(settings.caption_model, settings.generation, settings.hf_token),
            _classifier(settings.sentiment_model, settings.hf_token),
        )

    def caption(self, images: Sequence[bytes]) -> list[str]:
        """Raises BadImageError before any model work if one of the files is not a usable image."""
        captions = self.captioner([load_image(data) for data in images])
        if not all(captions):
            raise BadImageError(
                "I could not describe this picture: try another one, or type a caption."
            )
        return captions

    def classify(self, caption: str, text: str, *, caption_source: str = MANUAL) -> Analysis:
        """One batch of three: the verdict, and what the caption and text say on their own."""
        caption, text = caption.strip(), text.strip()
        if not text:
            raise BadTextError("The text is empty: send a few words to go with the picture.")
        if not caption:
            raise BadTextError("The caption is empty: describe the picture in a few words.")
        combined = combine(caption, text)
        overall, caption_only, text_only = self.classifier([combined, caption, text])
        return Analysis(caption, caption_source, text, combined, overall, caption_only, text_only)

    def analyze(
        self, text: str, *, image: bytes | None = None, caption: str | None = None
    ) -> Analysis:
        if (image is None) == (caption is None):
            raise ValueError("give exactly one of image or caption")
        if image is not None:
            (caption,) = self.caption([image])
            return self.classify(caption, text, caption_source=IMAGE)
        return self.classify(caption, text, caption_source=MANUAL)


@functools.cache
def _captioner(name: str, generation: GenerationSettings, token: str | None) -> Captioner:
    return Captioner.from_pretrained(name, generation=generation, token=token)


@functools.cache
def _classifier(name: str, token: str | None) -> SentimentClassifier:
    return SentimentClassifier.from_pretrained(name, token=token)
