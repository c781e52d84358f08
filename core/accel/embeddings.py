"""int8 vocabulary tables for `int8` mode: the largest weights that no linear layer holds.

RoBERTa's and BLIP's vocabulary tables are an eighth of what `int8` mode holds when idle in
bf16; in int8 they take half that. A row is looked up, not multiplied, so one scale per row
keeps it as close to float as the int8 linear layers are (docs/quantization.md).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from core.accel.linear_layers import int8_rows, replace_modules

# Rows quantized at a time: a whole table in float32 at once would be RoBERTa's 154 MB more
# at the peak of loading.
_CHUNK_ROWS = 4096


class Int8Embedding(nn.Module):
    """`nn.Embedding` with int8 rows and one scale per row; it returns the scales' dtype."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = embedding.weight.shape
        self.padding_idx = embedding.padding_idx
        weight = embedding.weight.detach()
        quantized = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
        scale = torch.empty(len(weight), dtype=torch.float32, device=weight.device)
        for start in range(0, len(weight), _CHUNK_ROWS):
            end = start + _CHUNK_ROWS
            quantized[start:end], scale[start:end] = int8_rows(weight[start:end])
        self.register_buffer("weight_int8", quantized)
        self.register_buffer("scale", scale.to(weight.dtype))  # cast with the model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = functional.embedding(ids, self.weight_int8).to(self.scale.dtype)
        return rows * self.scale[ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 rows"


def quantize_word_embeddings(model: nn.Module) -> int:
    """Swap each vocabulary table (transformers names them `word_embeddings`) for an
    `Int8Embedding`; how many were swapped. Position tables are small and read by index."""
    tables = {
        id(module.word_embeddings)
        for module in model.modules()
        if type(getattr(module, "word_embeddings", None)) is nn.Embedding
    }
    return replace_modules(model, lambda child: id(child) in tables, Int8Embedding)
