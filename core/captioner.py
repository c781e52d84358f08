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

from core import precision as precisions
from core.config import GenerationSettings
from core.loading import load_pretrained

log = logging.getLogger(__name__)

# In int8 mode only the vision encoder is quantized. Post-training quantization of BLIP's text
# decoder is published to lose caption accuracy (OpenVINO's BLIP notebook), and a greedy
# decoder turns one flipped token into a different caption; the README's "Precision" section
# has the measured cost and benefit.
CAPTION_INT8_ONLY = ("vision_model",)


class Captioner:
    def __init__(
        self,
        processor: BlipProcessor,
        model: BlipForConditionalGeneration,
        generation: GenerationSettings,
        precision: str = precisions.FP32,
    ) -> None:
        self.processor = processor
        self.model = model.eval()
        self.generation = generation
        self.precision = precision
        # Where and in which dtype the vision encoder takes its pixels.
        self._device = next(model.parameters()).device
        self._pixel_dtype = precisions.input_dtype(model.vision_model)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        generation: GenerationSettings = GenerationSettings(),
        token: str | None = None,
        precision: str = precisions.FP32,
        hardware: precisions.Hardware | None = None,
    ) -> Captioner:
        """`precision` is a mode of `core.precision` (`auto` included), resolved for `hardware`
        (detected when None): the model runs on its device, in that mode."""
        started = time.perf_counter()
        hardware = hardware or precisions.Hardware.detect()
        mode = precisions.resolve(
            precision, model=precisions.CAPTION, hardware=hardware, variable="CAPTION_PRECISION"
        )
        processor = load_pretrained(
            BlipProcessor.from_pretrained, name_or_path, variable="CAPTION_MODEL", token=token
        )
        model = load_pretrained(
            BlipForConditionalGeneration.from_pretrained,
            name_or_path,
            variable="CAPTION_MODEL",
            token=token,
            dtype=precisions.LOAD_DTYPES[mode],
        )
        # The text decoder stays out of int8: see CAPTION_INT8_ONLY.
        model = precisions.apply(model.to(hardware.device), mode, int8_only=CAPTION_INT8_ONLY)
        log.info(
            "Caption model %s loaded in %.1f s (%s on %s)",
            name_or_path,
            time.perf_counter() - started,
            mode,
            hardware.device,
        )
        return cls(processor, model, generation, mode)

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
                pixel_values=inputs["pixel_values"].to(self._device, self._pixel_dtype),
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
