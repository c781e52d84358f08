"""int8 linear layers: the stock form in torch, and their fast form in ONNX Runtime.

There are two, one per int8 kernel of `core.accel.onnx_graph`:
- `BlockInt8Linear` computes what `MatMulNBits` computes with `accuracy_level=4`: weights in
  int8 blocks of 64 inputs with one scale each, activations rounded to int8 per row and block
  as they enter. For layers that run one token at a time (a caption's decoding step).
- `RowInt8Linear` computes the `INT8_ROWS` kernel: 7-bit weights with one scale per output,
  each row of activations rounded to int8 with one scale. For layers that see a whole image or
  text at once.
Both are written out in torch, one row at a time in effect, so they run on any CPU and serve
as the reference. `in_graph` puts either (or a float `nn.Linear`) into an ONNX graph with the
same int8 weights; `OnnxLinear` runs one such layer in a session of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from core.accel.onnx_graph import (
    ACTIVATION_LEVELS,
    BLOCK_SIZE,
    Graph,
    quantize_blocks,
    quantize_rows,
    session,
)


class BlockInt8Linear(nn.Module):
    """`nn.Linear` with int8 weight blocks, its activations rounded per row and block."""

    def __init__(
        self, blocks: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None, inputs: int
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = inputs, len(blocks)
        self.register_buffer("blocks", blocks)  # int8, stored +128: (out, blocks, BLOCK_SIZE)
        self.register_buffer("scales", scales)  # (out, blocks)
        self.bias = bias

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> BlockInt8Linear:
        blocks, scales = quantize_blocks(linear.weight.detach().float(), BLOCK_SIZE)
        blocks = torch.from_numpy(blocks.view(np.int8))
        scales = torch.from_numpy(scales).view(linear.out_features, -1)
        return cls(blocks, scales, linear.bias, linear.in_features)

    def weight(self) -> torch.Tensor:
        """The float32 weight the blocks stand for, (out_features, in_features)."""
        levels = self.blocks.view(torch.uint8).float() - 128
        return (levels * self.scales[..., None]).flatten(1)[:, : self.in_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = round_activations(x.float().reshape(-1, self.in_features))
        bias = None if self.bias is None else self.bias.float()
        out = functional.linear(rows, self.weight(), bias)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 blocks"


def round_activations(rows: torch.Tensor) -> torch.Tensor:
    """Each row's blocks of `BLOCK_SIZE` rounded to int8 with their own scale (largest / 127)."""
    count, width = rows.shape
    blocks = -(-width // BLOCK_SIZE)
    padded = functional.pad(rows, (0, blocks * BLOCK_SIZE - width)).view(count, blocks, -1)
    scale = padded.abs().amax(dim=-1, keepdim=True) / 127
    rounded = torch.round(padded / scale.clamp(min=torch.finfo(torch.float32).tiny)) * scale
    return rounded.flatten(1)[:, :width]


class RowInt8Linear(nn.Module):
    """`nn.Linear` with 7-bit weights, one scale per output, its input rounded row by row."""

    def __init__(
        self, levels: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = levels.shape
        self.register_buffer("levels", levels)  # int8 within ±ROW_WEIGHT_LEVELS: (out, in)
        self.register_buffer("scales", scales)  # (out,)
        self.bias = bias

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> RowInt8Linear:
        levels, scales = quantize_rows(linear.weight.detach().float())
        return cls(torch.from_numpy(levels), torch.from_numpy(scales), linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.float().reshape(-1, self.in_features)
        largest = rows.abs().amax(dim=-1, keepdim=True)
        # As the graph computes it; the floor keeps an all-zero row's scale a normal number.
        scale = (largest * torch.tensor(1 / ACTIVATION_LEVELS)).clamp(min=torch.finfo().tiny)
        # Integer levels multiplied in float32: exact while a sum stays under 2**24.
        out = functional.linear(torch.round(rows / scale), self.levels.float())
        out = out * self.scales * scale
        if self.bias is not None:
            out = out + self.bias.float()
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 rows"


Int8Layer = BlockInt8Linear | RowInt8Linear


def stack_int8(layers: Sequence[Int8Layer], factors: Sequence[float] | None = None) -> Int8Layer:
    """One layer of the same kind that computes the outputs of all `layers` side by side, each
    multiplied by its factor (1 by default): every output keeps its own weights and scale."""
    pairs = list(zip(layers, factors or [1.0] * len(layers), strict=True))
    first = layers[0]
    scales = torch.cat([layer.scales * factor for layer, factor in pairs])
    bias = None
    if first.bias is not None:
        bias = torch.cat([layer.bias.detach() * factor for layer, factor in pairs])
    if isinstance(first, RowInt8Linear):
        return RowInt8Linear(torch.cat([layer.levels for layer in layers]), scales, bias)
    blocks = torch.cat([layer.blocks for layer in layers])
    return BlockInt8Linear(blocks, scales, bias, first.in_features)


def in_graph(graph: Graph, x: str, layer: nn.Linear | Int8Layer, factor: float = 1.0) -> str:
    """`layer(x) * factor` as nodes of `graph`, in the layer's own kernel and weights."""
    bias = None if layer.bias is None else layer.bias.detach().float() * factor
    if isinstance(layer, Int8Layer):
        scales = (layer.scales * factor).numpy()
        if isinstance(layer, RowInt8Linear):
            return graph.rows_product(x, layer.levels.numpy(), scales, bias)
        blocks = layer.blocks.view(torch.uint8).numpy()
        return graph.blocks_product(x, blocks, scales, bias, layer.in_features)
    return graph.linear(x, layer.weight * factor, bias)


def block_output(graph: Graph, x: str, states: str, output: nn.Module) -> str:
    """A BERT-style block's output (`dense`, then `LayerNorm` over it plus the residual
    `states`) as nodes of `graph`."""
    return graph.add_and_norm(in_graph(graph, x, output.dense), states, output.LayerNorm)


class OnnxLinear(nn.Module):
    """A linear layer's weights (int8, or float32 for a plain `nn.Linear`) in an ONNX Runtime
    session of their own: the same numbers, fast."""

    def __init__(self, layer: nn.Linear | Int8Layer, threads: int) -> None:
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        graph = Graph(1, layer.in_features)
        x = graph.input("x", 1, ["rows", layer.in_features])
        graph.output(in_graph(graph, x, layer), "y", 1, ["rows", layer.out_features])
        self._session = session(graph.model("linear"), threads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.detach().float().reshape(-1, self.in_features).contiguous().numpy()
        (out,) = self._session.run(None, {"x": rows})
        return torch.from_numpy(out).reshape(*x.shape[:-1], self.out_features).to(x.dtype)
