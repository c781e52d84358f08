"""Stage 4: classify a text as negative, neutral or positive with a local RoBERTa.

The labels are the model's own (`config.id2label`), so another sentiment model with
other classes works without code changes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BatchEncoding,
    PreTrainedTokenizerBase,
)

from core import accel
from core import precision as precisions
from core.loading import load_pretrained, load_weights, log_loaded
from core.sentiment_base import Sentiment, preprocess_tweet

__all__ = ["Sentiment", "SentimentClassifier", "preprocess_tweet"]


class SentimentClassifier:
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        runner: accel.Runner,
        precision: str = precisions.FP32,
    ) -> None:
        self.tokenizer = tokenizer
        self.runner = runner
        self.precision = precision
        config = runner.config
        # RoBERTa's positions start after padding_idx, so two of max_position_embeddings are
        # unusable; the cardiffnlp tokenizer declares no limit of its own.
        self.max_length = min(tokenizer.model_max_length, config.max_position_embeddings - 2)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        token: str | None = None,
        precision: str = precisions.FP32,
        hardware: precisions.Hardware | None = None,
        compile_dir: Path | None = None,
        accelerate: bool = True,
    ) -> SentimentClassifier:
        """`precision` is a mode of `core.precision` (`auto` included), resolved for `hardware`
        (detected when None): the model runs on its device, in that mode. With `compile_dir`,
        bf16 layers on a CPU with AMX are compiled and kept there (`accel.sentiment_compiled`);
        `accelerate=False` runs stock transformers only."""
        started = time.perf_counter()
        hardware = hardware or precisions.Hardware.detect()
        mode = precisions.resolve(
            precision,
            model=precisions.SENTIMENT,
            hardware=hardware,
            variable="SENTIMENT_PRECISION",
        )
        tokenizer = load_pretrained(
            AutoTokenizer.from_pretrained, name_or_path, variable="SENTIMENT_MODEL", token=token
        )
        load = partial(
            load_weights,
            AutoModelForSequenceClassification.from_pretrained,
            name_or_path,
            model=precisions.SENTIMENT,
            token=token,
            mode=mode,
            hardware=hardware,
        )
        runner = accel.sentiment_runner(
            load, mode, hardware, accelerate=accelerate, compile_dir=compile_dir
        )
        log_loaded(precisions.SENTIMENT, name_or_path, started, mode, runner.path)
        return cls(tokenizer, runner, mode)

    @property
    def compiled(self) -> bool:
        """Whether the layers run compiled for this CPU (`accel.sentiment_compiled`)."""
        return "compiled" in self.runner.path

    def preprocess(self, texts: Sequence[str]) -> BatchEncoding:
        return self.tokenizer(
            [preprocess_tweet(text) for text in texts],
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )

    def forward(self, inputs: BatchEncoding) -> torch.Tensor:
        inputs = inputs.to(self.runner.device)
        with torch.inference_mode():
            return self.runner.run(inputs["input_ids"], inputs["attention_mask"])

    def postprocess(self, logits: torch.Tensor) -> list[Sentiment]:
        id2label = self.runner.config.id2label
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
