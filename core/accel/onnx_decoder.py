"""Stage 2, inside: BLIP's text decoder as one ONNX Runtime graph with int8 weights.

While a caption is decoded, every step reads all of the decoder's weights once, so a step
costs what reading them costs. `MatMulNBits` (`core.accel.onnx_graph`) reads int8 weights at
memory speed on every CPU class, a quarter of float32's bytes (docs/performance.md).

So one greedy step of the decoder (its 12 layers, the language-model head and the argmax) is
one ONNX graph, built at load from the int8 layers of the decoder's stock form
(`core.accel.convert`), with their very weights. The token and position embeddings (a lookup)
stay in torch; the image's cross-attention keys and values, computed once per photo from its
577 rows, are two more int8 products (`ImageKeysValues`). The greedy loop around the steps is
`core.accel.caption_decoding`'s, shared with the torch decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto
from torch import nn
from transformers.models.blip.modeling_blip_text import (
    BlipTextLMHeadModel,
    BlipTextSelfAttention,
)

from core.accel.caption_decoding import Step
from core.accel.int8 import OnnxLinear, block_output, in_graph, stack_int8
from core.accel.onnx_graph import GELU, Graph, as_numpy, session


def supports(decoder: nn.Module) -> bool:
    """Whether `decoder` is a BLIP text decoder this graph reproduces."""
    return isinstance(decoder, BlipTextLMHeadModel) and decoder.config.hidden_act in GELU


class OnnxTextDecoder(nn.Module):
    """Stands in for `BlipForConditionalGeneration.text_decoder` in greedy decoding.

    It keeps the embeddings in torch, converted with the rest of the model; the image's key and
    value layers (`ImageKeysValues`) and every other decoder weight live in ONNX Runtime only.
    """

    def __init__(self, decoder: BlipTextLMHeadModel, threads: int) -> None:
        super().__init__()
        self.config = decoder.config
        self.generation_config = decoder.generation_config
        self.embeddings = decoder.bert.embeddings
        crosses = [layer.crossattention.self for layer in decoder.bert.encoder.layer]
        self.image_keys_values = ImageKeysValues(
            crosses, decoder.config.num_attention_heads, threads
        )
        self._session = session(build_step(decoder), threads)

    def greedy_steps(self, image_embeds: torch.Tensor, max_new_tokens: int) -> Step:
        """`caption_decoding.Steps`: the caches grow inside the graph, so no length is set."""
        keys_t, values = self.image_keys_values(image_embeds)
        keys_t, values = keys_t.numpy(), values.numpy()
        _, batch, heads, head_size, _ = keys_t.shape
        empty_keys = np.zeros((batch, heads, head_size, 0), "f4")
        empty_values = np.zeros((batch, heads, 0, head_size), "f4")
        feeds: dict[str, np.ndarray] = {}
        for index, (layer_keys_t, layer_values) in enumerate(zip(keys_t, values, strict=True)):
            feeds[f"image_keys_t.{index}"] = layer_keys_t
            feeds[f"image_values.{index}"] = layer_values
            feeds[f"past_key.{index}"], feeds[f"past_value.{index}"] = empty_keys, empty_values
        names = [output.name for output in self._session.get_outputs()]
        embeddings = self.embeddings

        def step(tokens: torch.Tensor, position: int) -> torch.Tensor:
            states = embeddings.LayerNorm(
                embeddings.word_embeddings(tokens[:, 0])
                + embeddings.position_embeddings.weight[position]
            )
            feeds["states"] = as_numpy(states)
            outputs = dict(zip(names, self._session.run(None, feeds), strict=True))
            for name, array in outputs.items():
                if name.startswith("present_"):
                    feeds[name.replace("present_", "past_")] = array
            return torch.from_numpy(outputs["next_tokens"]).to(tokens.device)[:, None]

        return step


class ImageKeysValues(nn.Module):
    """Every decoder layer's cross-attention keys and values for a batch of photos, in float32
    and in the layouts the graph reads: (layer, batch, head, head size, image) for the keys,
    (layer, batch, head, image, head size) for the values.

    All layers' keys come out of one int8 product, and all values out of another, in the
    kernel for many rows (`core.accel.int8.RowInt8Linear`): one row of the image at a time.
    """

    def __init__(self, crosses: Sequence[BlipTextSelfAttention], heads: int, threads: int) -> None:
        super().__init__()
        self.layers, self.heads = len(crosses), heads
        self.keys, self.values = (
            OnnxLinear(stack_int8([getattr(cross, part) for cross in crosses]), threads)
            for part in ("key", "value")
        )
        self.head_size = self.keys.out_features // (self.layers * heads)

    def forward(self, image_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, image, _ = image_embeds.shape
        keys_t = torch.empty(self.layers, batch, self.heads, self.head_size, image)
        values = torch.empty(self.layers, batch, self.heads, image, self.head_size)
        by_head = (image, self.layers, self.heads, self.head_size)
        for index, photo in enumerate(image_embeds):  # one at a time: see `OnnxVisionEncoder`
            keys_t[:, index] = self.keys(photo).float().view(by_head).permute(1, 2, 3, 0)
            values[:, index] = self.values(photo).float().view(by_head).permute(1, 2, 0, 3)
        return keys_t, values


def build_step(decoder: BlipTextLMHeadModel) -> onnx.ModelProto:
    """One greedy step: embedded newest tokens and both attention caches in; argmax out."""
    config = decoder.config
    graph = Graph(config.num_attention_heads, config.hidden_size)
    states = graph.input("states", TensorProto.FLOAT, ["batch", config.hidden_size])
    for index, layer in enumerate(decoder.bert.encoder.layer):
        attention = layer.attention.self
        # Queries come scaled by head size ** -0.5, as attention scores need them.
        fused = stack_int8(
            [attention.query, attention.key, attention.value], [graph.scale, 1.0, 1.0]
        )
        query, key, value = graph.split(in_graph(graph, states, fused), 3)
        keys_t = graph.cache("key", index, graph.heads(key, transposed=True))
        values = graph.cache("value", index, graph.heads(value))
        context = graph.attend(graph.heads(query), keys_t, values)
        states = block_output(graph, context, states, layer.attention.output)
        image_keys = graph.input(
            f"image_keys_t.{index}", TensorProto.FLOAT, graph.image_shape(keys=True)
        )
        image_values = graph.input(
            f"image_values.{index}", TensorProto.FLOAT, graph.image_shape(keys=False)
        )
        cross = layer.crossattention.self.query
        query = graph.heads(in_graph(graph, states, cross, graph.scale))
        context = graph.attend(query, image_keys, image_values)
        states = block_output(graph, context, states, layer.crossattention.output)
        hidden = graph.gelu(in_graph(graph, states, layer.intermediate.dense), config.hidden_act)
        states = block_output(graph, hidden, states, layer.output)
    head = decoder.cls.predictions
    hidden = graph.gelu(in_graph(graph, states, head.transform.dense), config.hidden_act)
    hidden = graph.norm(hidden, head.transform.LayerNorm)
    logits = in_graph(graph, hidden, head.decoder)
    graph.output(
        graph.node("ArgMax", logits, axis=-1, keepdims=0), "next_tokens", TensorProto.INT64
    )
    return graph.model("blip_text_decoder_step")
