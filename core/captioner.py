"""Stage 2: describe a photo in words with BLIP, run locally.

transformers v5 has no image-to-text pipeline, so this is its preprocess → forward →
postprocess split written out, batched: one forward pass serves several photos.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch
from PIL import Image
from transformers import BatchFeature, BlipForConditionalGeneration, BlipProcessor

from core.config import GenerationSettings
from core.loading import load_pretrained

log = logging.getLogger(__name__)


class Captioner:
    def __init__(
        self,
        processor: BlipProcessor,
        model: BlipForConditionalGeneration,
        generation: GenerationSettings,
    ) -> None:
        self.processor = processor
        self.model = model.eval()
        self.generation = generation

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        generation: GenerationSettings = GenerationSettings(),
        token: str | None = None,
    ) -> Captioner:
        started = time.perf_counter()
        processor = load_pretrained(
            BlipProcessor.from_pretrained, name_or_path, variable="CAPTION_MODEL", token=token
        )
        model = load_pretrained(
            BlipForConditionalGeneration.from_pretrained,
            name_or_path,
            variable="CAPTION_MODEL",
            token=token,
            dtype=torch.float32,
        )
        log.info("Caption model %s loaded in %.1f s", name_or_path, time.perf_counter() - started)
        return cls(processor, model, generation)

    @property
    def input_size(self) -> int:
        """Shorter side, in pixels, that the model sees; larger photos only cost download time."""
        size = self.processor.image_processor.size
        return min(size["height"], size["width"])

    def preprocess(self, images: Sequence[Image.Image]) -> BatchFeature:
        return self.processor(images=list(images), return_tensors="pt")

    def forward(self, inputs: BatchFeature) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.generate(
                pixel_values=inputs["pixel_values"],
                max_new_tokens=self.generation.max_new_tokens,
                num_beams=self.generation.num_beams,
                do_sample=False,
            )

    def postprocess(self, token_ids: torch.Tensor) -> list[str]:
        texts = self.processor.batch_decode(token_ids, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]

    def __call__(self, images: Sequence[Image.Image]) -> list[str]:
        if not images:
            return []
        return self.postprocess(self.forward(self.preprocess(images)))
