"""Stage 4: classify a text as negative, neutral or positive with a local RoBERTa.

The labels are the model's own (`config.id2label`), so another sentiment model with
other classes works without code changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BatchEncoding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from core import precision as precisions
from core.accel.sentiment_encoding import Layers, LeanPass, encodes_plainly, fuse_query_key_value
from core.loading import load_model, load_pretrained
from core.sentiment_base import Sentiment, preprocess_tweet

__all__ = ["Sentiment", "SentimentClassifier", "preprocess_tweet"]

AMX_BF16 = "amx_bf16"


class SentimentClassifier:
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        model: PreTrainedModel,
        precision: str = precisions.FP32,
        layers: Layers | None = None,
    ) -> None:
        """`layers`: the model's layers compiled (`core.accel.sentiment_compiled`), in place of its
        own."""
        self.tokenizer = tokenizer
        self.model = model.eval()
        self.precision = precision
        self._device = next(model.parameters()).device
        # RoBERTa's positions start after padding_idx, so two of max_position_embeddings are
        # unusable; the cardiffnlp tokenizer declares no limit of its own.
        self.max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings - 2)
        self._lean = LeanPass(model, layers) if encodes_plainly(model) else None
        self.compiled = layers is not None and self._lean is not None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        token: str | None = None,
        precision: str = precisions.FP32,
        hardware: precisions.Hardware | None = None,
        compile_dir: Path | None = None,
    ) -> SentimentClassifier:
        """`precision` is a mode of `core.precision` (`auto` included), resolved for `hardware`
        (detected when None): the model runs on its device, in that mode. With `compile_dir`,
        bf16 layers on a CPU with AMX are compiled and kept there (`accel.sentiment_compiled`)."""
        compiled: list[Layers] = []

        def prepare(model: PreTrainedModel, mode: str, hardware: precisions.Hardware) -> str:
            mode = _fuse_query_key_value(model, mode, hardware)
            if compile_dir is not None and _compiles(model, mode, hardware):
                from core.accel.sentiment_compiled import (
                    compiled_layers,  # torch's compiler: only here
                )

                layers = compiled_layers(model, compile_dir)
                if layers is not None:
                    compiled.append(layers)
                    model.roberta.encoder.layer = nn.ModuleList()  # the package holds them now
            return mode

        tokenizer = load_pretrained(
            AutoTokenizer.from_pretrained, name_or_path, variable="SENTIMENT_MODEL", token=token
        )
        model, mode = load_model(
            AutoModelForSequenceClassification.from_pretrained,
            name_or_path,
            model=precisions.SENTIMENT,
            token=token,
            precision=precision,
            hardware=hardware,
            prepare=prepare,
        )
        return cls(tokenizer, model, mode, compiled[0] if compiled else None)

    def preprocess(self, texts: Sequence[str]) -> BatchEncoding:
        return self.tokenizer(
            [preprocess_tweet(text) for text in texts],
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )

    def forward(self, inputs: BatchEncoding) -> torch.Tensor:
        inputs = inputs.to(self._device)
        with torch.inference_mode():
            if self._lean is not None:
                return self._lean(inputs["input_ids"], inputs["attention_mask"])
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


def _fuse_query_key_value(model: PreTrainedModel, mode: str, hardware: precisions.Hardware) -> str:
    """`load_model`'s step before the layers are converted: where the lean pass runs the model,
    it computes each layer's query, key and value in one product. The mode stays as it is.

    Not in fp32, where the weights stay the checkpoint's memory map: stacked copies would be
    held beside the mapped originals (85 MiB more for RoBERTa base). Every other mode makes
    new copies of the weights anyway.
    """
    if mode != precisions.FP32 and encodes_plainly(model):
        fuse_query_key_value(model)
    return mode


def _compiles(model: PreTrainedModel, mode: str, hardware: precisions.Hardware) -> bool:
    """Where compiled layers were measured to pay: bf16 on a CPU with AMX, which inductor's
    kernels use, with the lean pass (README, "Compiled layers")."""
    return (
        mode == precisions.BF16
        and hardware.device == "cpu"
        and AMX_BF16 in precisions.cpu_flags()
        and encodes_plainly(model)
    )
