"""Stage 4, inside: a RoBERTa-family classifier's layers as one ONNX Runtime graph, in int8.

Called one layer at a time from torch, ONNX Runtime's int8 products and torch's attention
took turns with the cores, and int8 classified slower than fp32 (docs/performance.md). The
twelve layers as one graph run in one call: `LeanPass` packs and embeds the texts in torch as
ever, the graph takes their hidden states and attention addend, and gives back the last
hidden states. Its linear layers are the stock form's int8 rows layers, with their weights.
"""

from __future__ import annotations

import onnx
import torch
from onnx import TensorProto
from transformers import RobertaForSequenceClassification

from core.accel.int8 import block_output, in_graph
from core.accel.onnx_graph import GELU, Graph, as_numpy, session


class OnnxEncoderLayers:
    """`sentiment_encoding.Layers`: (hidden states, attention addend) → hidden states."""

    def __init__(self, model: RobertaForSequenceClassification, threads: int) -> None:
        self._session = session(build_layers(model), threads)

    def __call__(self, states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        feeds = {"states": as_numpy(states), "bias": as_numpy(bias)}
        (encoded,) = self._session.run(None, feeds)
        return torch.from_numpy(encoded).to(states.dtype)


def supports(model: RobertaForSequenceClassification) -> bool:
    """Whether the graph reproduces `model`'s layers (a GELU that ONNX has)."""
    return model.config.hidden_act in GELU


def build_layers(model: RobertaForSequenceClassification) -> onnx.ModelProto:
    """Packed texts' hidden states and attention addend (`text_packing`) in; hidden states out.
    The layers' query, key and value are fused (`sentiment_encoding.fuse_query_key_value`)."""
    config = model.config
    graph = Graph(config.num_attention_heads, config.hidden_size)
    shape = ["sequences", "tokens", config.hidden_size]
    states = graph.input("states", TensorProto.FLOAT, shape)
    bias = graph.input("bias", TensorProto.FLOAT, ["sequences", 1, "tokens", "tokens"])
    for layer in model.roberta.encoder.layer:
        attention = layer.attention
        query, key, value = graph.split(in_graph(graph, states, attention.self.qkv), 3)
        # Its default scale, head size ** -0.5, is RoBERTa's; `bias` is the attention addend.
        context = graph.node(
            "MultiHeadAttention", query, key, value, "", "", bias, num_heads=graph.heads_count
        )
        states = block_output(graph, context, states, attention.output)
        hidden = graph.gelu(in_graph(graph, states, layer.intermediate.dense), config.hidden_act)
        states = block_output(graph, hidden, states, layer.output)
    graph.output(states, "encoded", TensorProto.FLOAT, shape)
    return graph.model("roberta_layers")
