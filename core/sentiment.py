"""Stage 4: classify a text as negative, neutral or positive with a local RoBERTa.

The labels are the model's own (`config.id2label`), so another sentiment model with
other classes works without code changes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BatchEncoding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from core.loading import load_pretrained

log = logging.getLogger(__name__)

_MENTION = re.compile(r"(?<!\S)@\S+")
_LINK = re.compile(r"(?<!\S)http\S*")


@dataclass(frozen=True)
class Sentiment:
    label: str
    score: float
    scores: Mapping[str, float]


def preprocess_tweet(text: str) -> str:
    """The model card's preprocessing: the model was trained on tweets with these placeholders."""
    return _LINK.sub("http", _MENTION.sub("@user", text))


class SentimentClassifier:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
        self.tokenizer = tokenizer
        self.model = model.eval()
        # RoBERTa's positions start after padding_idx, so two of max_position_embeddings are
        # unusable; the cardiffnlp tokenizer declares no limit of its own.
        self.max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings - 2)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, token: str | None = None) -> SentimentClassifier:
        started = time.perf_counter()
        tokenizer = load_pretrained(
            AutoTokenizer.from_pretrained, name_or_path, variable="SENTIMENT_MODEL", token=token
        )
        model = load_pretrained(
            AutoModelForSequenceClassification.from_pretrained,
            name_or_path,
            variable="SENTIMENT_MODEL",
            token=token,
            dtype=torch.float32,
        )
        log.info("Sentiment model %s loaded in %.1f s", name_or_path, time.perf_counter() - started)
        return cls(tokenizer, model)

    def preprocess(self, texts: Sequence[str]) -> BatchEncoding:
        return self.tokenizer(
            [preprocess_tweet(text) for text in texts],
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )

    def forward(self, inputs: BatchEncoding) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(**inputs).logits

    def postprocess(self, logits: torch.Tensor) -> list[Sentiment]:
        id2label = self.model.config.id2label
        results = []
        for row in logits.float().softmax(dim=-1).tolist():
            scores = {id2label[index]: probability for index, probability in enumerate(row)}
            best = max(range(len(row)), key=row.__getitem__)
            results.append(Sentiment(label=id2label[best], score=row[best], scores=scores))
        return results

    def __call__(self, texts: Sequence[str]) -> list[Sentiment]:
        if not texts:
            return []
        return self.postprocess(self.forward(self.preprocess(texts)))
