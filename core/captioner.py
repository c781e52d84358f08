"""Stage 2: describe a photo in words with BLIP, run locally.

transformers v5 has no image-to-text pipeline, so this is its preprocess → forward →
postprocess split written out, batched: one forward pass serves several photos. What runs in
forward comes from `core.accel`: stock `generate()`, or a fast path checked against it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial

import torch
from PIL import Image
from transformers import BatchFeature, BlipForConditionalGeneration, BlipProcessor

from core import accel
from core import precision as precisions
from core.config import GenerationSettings
from core.loading import load_pretrained, load_weights, log_loaded


class Captioner:
    def __init__(
        self,
        processor: BlipProcessor,
        runner: accel.Runner,
        generation: GenerationSettings,
        precision: str = precisions.FP32,
    ) -> None:
        self.processor = processor
        self.runner = runner
        self.generation = generation
        self.precision = precision

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        generation: GenerationSettings = GenerationSettings(),
        token: str | None = None,
        precision: str = precisions.FP32,
        hardware: precisions.Hardware | None = None,
        accelerate: bool = True,
    ) -> Captioner:
        """`precision` is a mode of `core.precision` (`auto` included), resolved for `hardware`
        (detected when None): the model runs on its device, in that mode; `accelerate=False`
        runs stock transformers only."""
        started = time.perf_counter()
        hardware = hardware or precisions.Hardware.detect()
        mode = precisions.resolve(
            precision, model=precisions.CAPTION, hardware=hardware, variable="CAPTION_PRECISION"
        )
        processor = load_pretrained(
            BlipProcessor.from_pretrained, name_or_path, variable="CAPTION_MODEL", token=token
        )
        load = partial(
            load_weights,
            BlipForConditionalGeneration.from_pretrained,
            name_or_path,
            model=precisions.CAPTION,
            token=token,
            mode=mode,
            hardware=hardware,
        )
        runner = accel.caption_runner(load, mode, hardware, generation, accelerate=accelerate)
        log_loaded(precisions.CAPTION, name_or_path, started, mode, runner.path)
        return cls(processor, runner, generation, mode)

    @property
    def input_size(self) -> int:
        """Shorter side, in pixels, that the model sees; larger photos only cost download time."""
        size = self.processor.image_processor.size
        return min(size["height"], size["width"])

    def preprocess(self, images: Sequence[Image.Image]) -> BatchFeature:
        return self.processor(images=list(images), return_tensors="pt")

    def forward(self, inputs: BatchFeature) -> torch.Tensor:
        pixel_values = inputs["pixel_values"].to(self.runner.device, self.runner.input_dtype)
        with torch.inference_mode():
            return self.runner.run(pixel_values, self.generation.max_new_tokens)

    def postprocess(self, token_ids: torch.Tensor) -> list[str]:
        texts = self.processor.batch_decode(token_ids, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]

    def __call__(self, images: Sequence[Image.Image]) -> list[str]:
        if not images:
            return []
        return self.postprocess(self.forward(self.preprocess(images)))
