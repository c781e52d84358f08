"""Stage 2: describe a photo in words with BLIP, run locally.

transformers v5 has no image-to-text pipeline, so this is its preprocess → forward →
postprocess split written out, batched: one forward pass serves several photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from PIL import Image
from transformers import BatchFeature, BlipForConditionalGeneration, BlipProcessor

from core import precision as precisions
from core.accel.caption_decoding import decode_greedily, decodes_plainly
from core.accel.vision_attention import fuse_vision_attention
from core.config import GenerationSettings
from core.loading import load_model, load_pretrained

# Dynamic int8 (int8 mode on a CPU without native bf16) quantizes only the vision encoder.
# Post-training quantization of BLIP's text decoder is published to lose caption accuracy
# (OpenVINO's BLIP notebook, which compresses the decoder's weights only), and a greedy decoder
# turns one flipped token into a different caption. Weight-only int8 (CPUs with bf16) rounds
# no activations and covers the decoder too; the README's "Precision" section has the figures.
CAPTION_DYNAMIC_INT8_ONLY = ("vision_model",)
# Every call of the vision encoder has 577 rows a photo: `linear_layers.pack_linear_layers`.
CAPTION_MANY_ROWS = ("vision_model",)


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
        fuse_vision_attention(model)
        self.generation = generation
        self.precision = precision
        # Where and in which dtype the vision encoder takes its pixels.
        self._device = next(model.parameters()).device
        self._pixel_dtype = precisions.input_dtype(model.vision_model)
        self._lean = decodes_plainly(model.text_decoder.generation_config, generation.num_beams)
        if not self._lean and hasattr(model.text_decoder, "greedy_steps"):
            raise ValueError("the ONNX Runtime text decoder decodes greedily only (num_beams=1)")

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
        processor = load_pretrained(
            BlipProcessor.from_pretrained, name_or_path, variable="CAPTION_MODEL", token=token
        )
        model, mode = load_model(
            BlipForConditionalGeneration.from_pretrained,
            name_or_path,
            model=precisions.CAPTION,
            token=token,
            precision=precision,
            hardware=hardware,
            dynamic_int8_only=CAPTION_DYNAMIC_INT8_ONLY,
            many_rows=CAPTION_MANY_ROWS,
            prepare=partial(_onnx_decoder, num_beams=generation.num_beams),
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
        pixel_values = inputs["pixel_values"].to(self._device, self._pixel_dtype)
        with torch.inference_mode():
            if self._lean:
                return decode_greedily(self.model, pixel_values, self.generation.max_new_tokens)
            return self.model.generate(
                pixel_values=pixel_values,
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


def _onnx_decoder(
    model: BlipForConditionalGeneration, mode: str, hardware: precisions.Hardware, *, num_beams: int
) -> str:
    """Where the decoder runs in int8 on a CPU with VNNI, hand it to ONNX Runtime; the mode
    that then runs.

    `core.accel.onnx_decoder` says why; it covers greedy decoding (the lean loop's case) only, and
    elsewhere the decoder stays in torch, in the precision of the rest: a mode named for its
    int8 decoder is then plain bf16 or fp32.
    """
    int8_decoder = mode == precisions.INT8 or mode in precisions.INT8_DECODER_BASES
    if int8_decoder and hardware.device == "cpu" and hardware.int8_dot:
        from core.accel import onnx_decoder  # imports onnx and onnxruntime: only where they are used

        decoder = model.text_decoder
        if decodes_plainly(decoder.generation_config, num_beams) and onnx_decoder.supports(decoder):
            model.text_decoder = onnx_decoder.OnnxTextDecoder(
                decoder, threads=torch.get_num_threads()
            )
            return mode
    return precisions.INT8_DECODER_BASES.get(mode, mode)
