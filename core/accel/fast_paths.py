"""The fast path for each model, mode and device.

The captioner's is built in place from the stock model in its mode's form (`to_stock_form`),
whose int8 layers the ONNX graphs take as they are; the classifier's from a fresh load.

Captioner:
- the vision encoder's attention on PyTorch's fused kernel (`vision_attention`); on a CPU, in
  the modes whose vision encoder is float32 or int8, the whole encoder in ONNX Runtime
  (`onnx_vision`);
- the text decoder: on a CPU, in the int8 and int8-decoder modes, one ONNX Runtime graph per
  step (`onnx_decoder`); elsewhere transformers' own layers in a lean greedy loop
  (`caption_decoding`), which only takes allow-listed generation settings;
- bf16 on a CPU that runs it natively: weights prepacked for oneDNN (`linear_layers`).

Classifier: RoBERTa-family layers as one lean pass over packed texts (`sentiment_encoding`),
their linear layers prepacked in bf16, in ONNX Runtime in int8, or compiled ahead of time
where a CPU has AMX (`sentiment_compiled`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from transformers import BlipForConditionalGeneration, PreTrainedModel

from core.accel import linear_layers, onnx_decoder, onnx_encoder, onnx_vision
from core.accel.caption_decoding import decode_greedily, unsafe_generation_settings
from core.accel.convert import copy_into_memory, int8_parts, to_stock_form
from core.accel.runner import Runner
from core.accel.sentiment_encoding import LeanPass, encodes_plainly, fuse_query_key_value
from core.accel.stock import device_of, input_dtype
from core.accel.vision_attention import fuse_vision_attention
from core.config import GenerationSettings
from core.precision import BF16, FP32, FP32_INT8_DECODER, INT8, INT8_DECODER_BASES, Hardware

# Modes whose vision encoder runs in ONNX Runtime on a CPU, and its layers' number format.
_ONNX_VISION = {FP32_INT8_DECODER: "float32", INT8: "int8"}


class NotSupported(Exception):
    """No fast path covers this model or these settings: stock transformers run, as designed."""


def fast_captioner(
    model: BlipForConditionalGeneration,
    mode: str,
    hardware: Hardware,
    generation: GenerationSettings,
) -> Runner:
    unsafe = unsafe_generation_settings(model.text_decoder.generation_config, generation)
    if unsafe:
        raise NotSupported(f"its fast decoding loop does not take {', '.join(unsafe)}")
    model.eval()
    fuse_vision_attention(model)
    on_cpu = hardware.device == "cpu"
    threads = torch.get_num_threads()
    names = ["lean greedy decoding"]
    if on_cpu and (mode == INT8 or mode in INT8_DECODER_BASES):
        decoder = model.text_decoder
        if not onnx_decoder.supports(decoder):
            raise NotSupported("its text decoder is not one the ONNX graph reproduces")
        model.text_decoder = onnx_decoder.OnnxTextDecoder(decoder, threads=threads)
        names.append("int8 decoder in ONNX Runtime")
    if on_cpu and mode in _ONNX_VISION:
        if not onnx_vision.supports(model.vision_model):
            raise NotSupported("its vision encoder is not one the ONNX graph reproduces")
        model.vision_model = onnx_vision.OnnxVisionEncoder(model.vision_model, threads=threads)
        names.append(f"{_ONNX_VISION[mode]} vision encoder in ONNX Runtime")
    base = INT8_DECODER_BASES.get(mode, mode)
    if on_cpu and base == BF16 and linear_layers.packing_available():
        linear_layers.pack_linear_layers(model, many_rows=[model.vision_model])
        linear_layers.fuse_gelu(model)
        names.append("prepacked bf16 weights")
    if on_cpu and mode in _ONNX_VISION:
        copy_into_memory(model)  # what stays in torch lets the float32 checkpoint's map go
    pixel_dtype = model.vision_model.embeddings.patch_embedding.weight.dtype
    return Runner(
        partial(decode_greedily, model),
        ", ".join(names),
        model.config,
        pixel_dtype,
        device_of(model.vision_model.embeddings),
    )


def fast_classifier(
    model: PreTrainedModel, mode: str, hardware: Hardware, compile_dir: Path | None
) -> Runner:
    if not encodes_plainly(model):
        raise NotSupported(f"no lean pass covers {type(model).__name__}")
    model.eval()
    on_cpu = hardware.device == "cpu"
    names = ["lean pass over packed texts"]
    if mode != FP32:
        # Not in fp32, where the weights stay the checkpoint's memory map: stacked copies
        # would be held beside the mapped originals.
        fuse_query_key_value(model)
    to_stock_form(model, mode)
    layers = None
    if int8_parts(model, mode):
        if not onnx_encoder.supports(model):
            raise NotSupported("its layers are not ones the ONNX graph reproduces")
        layers = onnx_encoder.OnnxEncoderLayers(model, threads=torch.get_num_threads())
        names.append("int8 layers in one ONNX Runtime graph")
    if on_cpu and mode == BF16 and linear_layers.packing_available():
        linear_layers.pack_linear_layers(model)
        linear_layers.fuse_gelu(model)
        names.append("prepacked bf16 weights")
        if compile_dir is not None and hardware.amx:
            from core.accel.sentiment_compiled import compiled_layers  # torch's compiler

            layers = compiled_layers(model, compile_dir)
            if layers is not None:
                names.append("layers compiled for this CPU")
    if layers is not None:
        model.roberta.encoder.layer = torch.nn.ModuleList()  # the graph or package holds them
    return Runner(
        LeanPass(model, layers),
        ", ".join(names),
        model.config,
        input_dtype(model),
        device_of(model),
    )
