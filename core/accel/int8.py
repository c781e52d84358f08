"""int8 linear layers: the stock form in torch, and its fast form in ONNX Runtime.

Both compute what `MatMulNBits` computes with `accuracy_level=4` (`core.accel.onnx_graph`):
weights in int8 blocks of 64 inputs with one scale each, activations rounded to int8 per row
and block as they enter. `Int8Linear` writes that out in torch, one row at a time in effect,
so it runs on any CPU and serves as the reference; `OnnxLinear` hands the same int8 blocks to
ONNX Runtime, whose kernel reads them at memory speed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from core.accel.onnx_graph import BLOCK_SIZE, Graph, quantize_blocks, session


class Int8Linear(nn.Module):
    """`nn.Linear` with int8 weight blocks, its activations rounded per row and block."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        blocks, scales = quantize_blocks(linear.weight.detach().float(), BLOCK_SIZE)
        self.register_buffer("blocks", torch.from_numpy(blocks.view(np.int8)))  # stored +128
        self.register_buffer("scales", torch.from_numpy(scales).view(self.out_features, -1))
        self.bias = linear.bias

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


class OnnxLinear(nn.Module):
    """`Int8Linear`'s blocks in an ONNX Runtime session of their own: the same numbers, fast."""

    def __init__(self, layer: Int8Linear, threads: int) -> None:
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        graph = Graph(1, layer.in_features)
        x = graph.input("x", 1, ["rows", layer.in_features])
        blocks = layer.blocks.view(torch.uint8).numpy()
        y = graph.quantized(x, blocks, layer.scales.numpy(), layer.bias, layer.in_features)
        graph.output(y, "y", 1, ["rows", layer.out_features])
        self._session = session(graph.model("linear"), threads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.detach().float().reshape(-1, self.in_features).contiguous().numpy()
        (out,) = self._session.run(None, {"x": rows})
        return torch.from_numpy(out).reshape(*x.shape[:-1], self.out_features).to(x.dtype)
