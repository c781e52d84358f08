"""Stage 2, inside: BLIP's vision attention on PyTorch's fused kernel.

transformers' BLIP vision encoder computes attention as matmul → softmax → matmul, with the
577 × 577 score matrix of every head written out and read back. `scaled_dot_product_attention`
gives the same result in one fused kernel, in a fraction of the time (docs/performance.md).
The swap keeps the model's own `qkv` and `projection` layers, so every mode applies.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional
from transformers.models.blip.modeling_blip import BlipAttention

from core.accel.linear_layers import replace_modules


class FusedBlipAttention(nn.Module):
    def __init__(self, attention: BlipAttention) -> None:
        super().__init__()
        self.num_heads = attention.num_heads
        self.qkv = attention.qkv
        self.projection = attention.projection

    def forward(self, hidden_states: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, None]:
        """What `BlipAttention` returns, without the attention weights nobody here asks for."""
        batch, tokens, width = hidden_states.shape
        query, key, value = (
            self.qkv(hidden_states)
            .view(batch, tokens, 3, self.num_heads, width // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        # The default scale, head size ** -0.5, is BLIP's.
        context = functional.scaled_dot_product_attention(query, key, value)
        return self.projection(context.transpose(1, 2).reshape(batch, tokens, width)), None


def fuse_vision_attention(model: nn.Module) -> int:
    """Swap every `BlipAttention` under `model` in place; how many were swapped."""
    return replace_modules(
        model, lambda child: isinstance(child, BlipAttention), FusedBlipAttention
    )
