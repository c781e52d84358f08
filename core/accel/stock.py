"""Stock transformers, in the mode's number format: the reference and the fallback."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from transformers import BlipForConditionalGeneration, PreTrainedModel

from core.accel.convert import to_stock_form
from core.accel.runner import STOCK, Runner
from core.config import GenerationSettings


def stock_captioner(
    model: BlipForConditionalGeneration, mode: str, generation: GenerationSettings
) -> Runner:
    """`generate()` on the model converted to `mode`."""
    model = to_stock_form(model, mode).eval()
    return Runner(
        partial(_generate, model, generation),
        STOCK,
        model.config,
        input_dtype(model.vision_model),
        device_of(model),
        scores=lambda pixel_values, tokens: (
            model(pixel_values=pixel_values, input_ids=tokens).logits
        ),
    )


def stock_classifier(model: PreTrainedModel, mode: str) -> Runner:
    """`model(input_ids, attention_mask).logits` on the model converted to `mode`."""
    model = to_stock_form(model, mode).eval()
    return Runner(
        lambda input_ids, attention_mask: (
            model(input_ids=input_ids, attention_mask=attention_mask).logits
        ),
        STOCK,
        model.config,
        input_dtype(model),
        device_of(model),
    )


def _generate(
    model: BlipForConditionalGeneration,
    generation: GenerationSettings,
    pixel_values: torch.Tensor,
    max_new_tokens: int,
) -> torch.Tensor:
    return model.generate(
        pixel_values=pixel_values,
        max_new_tokens=max_new_tokens,
        num_beams=generation.num_beams,
        do_sample=False,
    )


def input_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype `module` expects its inputs in: that of its first float parameter."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
