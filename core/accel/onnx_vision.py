"""Stage 2, inside: BLIP's vision encoder as one ONNX Runtime graph.

A photo is 577 rows through twelve layers, about 100 GFLOP: compute-bound. On CPUs without
native bfloat16, ONNX Runtime's float32 kernels and fused graph run it well ahead of torch's
eager layers (docs/performance.md); in int8 mode the same graph takes `MatMulNBits`.
The patch embedding (one strided convolution) stays in torch, in the model's precision.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto
from torch import nn
from transformers.models.blip.modeling_blip import BlipVisionModel

from core.accel.onnx_graph import GELU, Graph, as_numpy, session


def supports(vision: nn.Module) -> bool:
    """Whether `vision` is a BLIP vision encoder this graph reproduces."""
    return isinstance(vision, BlipVisionModel) and vision.config.hidden_act in GELU


class OnnxVisionEncoder(nn.Module):
    """Stands in for `BlipForConditionalGeneration.vision_model`: `(last_hidden_state,)`."""

    def __init__(self, vision: BlipVisionModel, *, int8: bool, threads: int) -> None:
        super().__init__()
        self.config = vision.config
        self.embeddings = vision.embeddings
        self._session = session(build_encoder(vision, int8=int8), threads)

    def forward(self, pixel_values: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor]:
        states = as_numpy(self.embeddings(pixel_values))
        (encoded,) = self._session.run(None, {"states": states})
        dtype = self.embeddings.patch_embedding.weight.dtype
        return (torch.from_numpy(encoded).to(pixel_values.device, dtype),)


def build_encoder(vision: BlipVisionModel, *, int8: bool) -> onnx.ModelProto:
    """Embedded patches in, the post-layer-norm hidden states out: (batch, tokens, hidden)."""
    config = vision.config
    hidden, heads = config.hidden_size, config.num_attention_heads
    graph = Graph(heads, hidden, int8=int8)
    by_head = graph.constant(np.array([0, 0, 3, heads, hidden // heads], "i8"))
    merged = graph.constant(np.array([0, 0, hidden], "i8"))
    scale = graph.constant(np.array((hidden // heads) ** -0.5, "f4"))
    states = graph.input("states", TensorProto.FLOAT, ["batch", "tokens", hidden])
    for layer in vision.encoder.layers:
        attention = layer.self_attn
        qkv = graph.node(
            "Transpose",
            graph.node(
                "Reshape",
                graph.module(graph.norm(states, layer.layer_norm1), attention.qkv),
                by_head,
            ),
            perm=[2, 0, 3, 1, 4],
        )
        query, keys_t, values = (
            graph.node("Squeeze", part, graph.constant(np.array([0], "i8")))
            for part in graph.node("Split", qkv, axis=0, num_outputs=3, outputs=3)
        )
        scores = graph.node(
            "MatMul",
            graph.node("Mul", query, scale),
            graph.node("Transpose", keys_t, perm=[0, 1, 3, 2]),
        )
        context = graph.node("MatMul", graph.node("Softmax", scores, axis=-1), values)
        context = graph.node("Reshape", graph.node("Transpose", context, perm=[0, 2, 1, 3]), merged)
        states = graph.node("Add", graph.module(context, attention.projection), states)
        mlp = layer.mlp
        hidden_states = graph.gelu(
            graph.module(graph.norm(states, layer.layer_norm2), mlp.fc1), config.hidden_act
        )
        states = graph.node("Add", graph.module(hidden_states, mlp.fc2), states)
    encoded = graph.norm(states, vision.post_layernorm)
    graph.output(encoded, "encoded", TensorProto.FLOAT, ["batch", "tokens", hidden])
    return graph.model("blip_vision_encoder")
