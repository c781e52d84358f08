"""Stage 2, inside: BLIP's vision encoder as one ONNX Runtime graph.

A photo is 577 rows through twelve layers, about 100 GFLOP: compute-bound. On CPUs without
native bfloat16, ONNX Runtime's float32 kernels and fused graph run it well ahead of torch's
eager layers (docs/performance.md). It takes each linear layer as the model holds it: float32,
or int8 rows in int8 mode (`core.accel.int8`).
The patch embedding (one strided convolution) stays in torch, in the model's precision.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto
from torch import nn
from transformers.models.blip.modeling_blip import BlipVisionModel

from core.accel.int8 import in_graph
from core.accel.onnx_graph import GELU, Graph, as_numpy, session


def supports(vision: nn.Module) -> bool:
    """Whether `vision` is a BLIP vision encoder this graph reproduces."""
    return isinstance(vision, BlipVisionModel) and vision.config.hidden_act in GELU


class OnnxVisionEncoder(nn.Module):
    """Stands in for `BlipForConditionalGeneration.vision_model`: `(last_hidden_state,)`."""

    def __init__(self, vision: BlipVisionModel, *, threads: int) -> None:
        super().__init__()
        self.config = vision.config
        self.embeddings = vision.embeddings
        self._session = session(build_encoder(vision), threads)

    def forward(self, pixel_values: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor]:
        states = as_numpy(self.embeddings(pixel_values))
        # One photo at a time: no slower than eight at once, with an eighth of their
        # activations alive. Each row is computed on its own either way.
        encoded = np.concatenate(
            [self._session.run(None, {"states": photo[None]})[0] for photo in states]
        )
        dtype = self.embeddings.patch_embedding.weight.dtype
        return (torch.from_numpy(encoded).to(pixel_values.device, dtype),)


def build_encoder(vision: BlipVisionModel) -> onnx.ModelProto:
    """Embedded patches in, the post-layer-norm hidden states out: (batch, tokens, hidden)."""
    config = vision.config
    hidden, heads = config.hidden_size, config.num_attention_heads
    graph = Graph(heads, hidden)
    states = graph.input("states", TensorProto.FLOAT, ["batch", "tokens", hidden])
    for layer in vision.encoder.layers:
        attention = layer.self_attn
        query, key, value = graph.split(
            in_graph(graph, graph.norm(states, layer.layer_norm1), attention.qkv), 3
        )
        # ONNX Runtime's fused attention; its default scale, head size ** -0.5, is BLIP's.
        context = graph.node("MultiHeadAttention", query, key, value, num_heads=heads)
        states = graph.node("Add", in_graph(graph, context, attention.projection), states)
        mlp = layer.mlp
        hidden_states = graph.gelu(
            in_graph(graph, graph.norm(states, layer.layer_norm2), mlp.fc1), config.hidden_act
        )
        states = graph.node("Add", in_graph(graph, hidden_states, mlp.fc2), states)
    encoded = graph.norm(states, vision.post_layernorm)
    graph.output(encoded, "encoded", TensorProto.FLOAT, ["batch", "tokens", hidden])
    return graph.model("blip_vision_encoder")
