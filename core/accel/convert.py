"""A loaded model converted, in place, to the number format of its mode: the stock form that
transformers' own `generate()` and forward run, and that every fast path is checked against."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from core.accel.embeddings import quantize_word_embeddings
from core.accel.int8 import BlockInt8Linear, Int8Layer, RowInt8Linear
from core.accel.linear_layers import replace_linear_layers
from core.memory import page_out, release_freed_memory
from core.precision import BF16, FP16, INT8, INT8_DECODER_BASES

# Where the captioner's int8-decoder modes keep int8 weights.
TEXT_DECODER = "text_decoder"


def int8_parts(model: nn.Module, mode: str) -> list[nn.Module]:
    """The submodules that hold int8 weights in `mode`: all of an int8 model, a captioner's
    text decoder in the int8-decoder modes, none otherwise."""
    if mode == INT8:
        return [model]
    if mode in INT8_DECODER_BASES:
        return [model.get_submodule(TEXT_DECODER)]
    return []


def to_stock_form(model: nn.Module, mode: str) -> nn.Module:
    """Convert `model` in place to `mode` and return it.

    bf16 and fp16 cast the weights (a model loaded in that dtype is left as it is). In int8
    parts (`int8_parts`) every `nn.Linear` becomes a `BlockInt8Linear` if it runs one token at a
    time (`stepwise_layers`), else a `RowInt8Linear`, and every vocabulary table an
    `Int8Embedding`; what is left keeps the mode's float format. No copy of a replaced float
    weight stays alive once this returns.
    """
    parts = int8_parts(model, mode)
    if parts:
        copy_into_memory(model, skip=linear_weights(parts))
        stepwise = stepwise_layers(model)

        def quantized(layer: nn.Linear) -> nn.Module:
            kind = BlockInt8Linear if id(layer) in stepwise else RowInt8Linear
            int8 = kind.from_linear(layer)
            # Rounding a layer makes float copies of its weight. glibc keeps such freed heap
            # for reuse, and layer after layer it piled up past fp32's whole footprint.
            release_freed_memory()
            page_out(layer.weight)  # read once from the checkpoint's map, never again
            return int8

        for part in parts:
            replace_linear_layers(part, quantized)
            quantize_word_embeddings(part)
    base = INT8_DECODER_BASES.get(mode, mode)
    if base in (BF16, FP16):
        cast_floats(model, torch.float16 if base == FP16 else torch.bfloat16)
    return model


def cast_floats(model: nn.Module, dtype: torch.dtype) -> None:
    """`model.to(dtype)`, but for int8 layers, whose scales and biases stay float32: their
    products are computed in float32 (`core.accel.int8`), and a scale rounded to bf16 would
    add its own error to every weight of its block or row."""
    for module in model.modules():
        if isinstance(module, Int8Layer):
            continue
        tensors = (*module.parameters(recurse=False), *module.buffers(recurse=False))
        for tensor in tensors:
            if tensor.is_floating_point():
                tensor.data = tensor.data.to(dtype)


def stepwise_layers(model: nn.Module) -> set[int]:
    """The linear layers (by id) that a caption's decoding runs one token per photo at a time:
    all of a captioner's text decoder but its cross-attention keys and values, which see the
    whole image at once. Every other layer sees a whole image or text."""
    decoder = getattr(model, TEXT_DECODER, None)
    if decoder is None:
        return set()
    image_side = {
        id(linear)
        for layer in decoder.bert.encoder.layer
        for linear in (layer.crossattention.self.key, layer.crossattention.self.value)
    }
    return {
        id(linear)
        for linear in decoder.modules()
        if isinstance(linear, nn.Linear) and id(linear) not in image_side
    }


def linear_weights(modules: Iterable[nn.Module]) -> set[int]:
    return {
        id(layer.weight)
        for module in modules
        for layer in module.modules()
        if isinstance(layer, nn.Linear)
    }


def copy_into_memory(model: nn.Module, *, skip: set[int] = frozenset()) -> None:
    """Give every tensor that will stay as it is (all but those in `skip`) its own memory.

    `from_pretrained` memory-maps the checkpoint, and the map lives as long as any tensor
    still points into it: the embeddings, layer norms and biases that a converted model keeps
    would hold the whole float32 file resident. Copied, they let it go once the last float
    weight is dropped.
    """
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if id(tensor) not in skip:
                tensor.data = tensor.data.clone()
