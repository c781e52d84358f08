"""The fixed inputs a fast path is checked on against stock transformers, once, at load."""

from __future__ import annotations

import torch
from transformers import PretrainedConfig

# Caption tokens compared: enough to cover every layer of the decoder many times over.
PROBE_TOKENS = 8
_TEXT_LENGTHS = (9, 5, 3)  # tokens, <s> and </s> included: three texts of a reply, padded


def caption_probe(
    config: PretrainedConfig, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """One photo's pixel values: smooth colour waves, the same at every start."""
    size = config.vision_config.image_size
    line = torch.linspace(-3.0, 3.0, size)
    rows, columns = torch.meshgrid(line, line, indexing="ij")
    channels = [torch.sin(rows * (1 + c) + columns * (2 - c)) for c in range(3)]
    return torch.stack(channels)[None].to(device, dtype)


def text_probe(config: PretrainedConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Three texts of other lengths, padded as a tokenizer pads them: ids and attention mask."""
    longest = max(_TEXT_LENGTHS)
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    bos = config.bos_token_id if config.bos_token_id is not None else 0
    eos = config.eos_token_id if config.eos_token_id is not None else 0
    words = [token for token in range(4, config.vocab_size) if token not in (pad, bos, eos)]
    ids = torch.full((len(_TEXT_LENGTHS), longest), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(_TEXT_LENGTHS):
        inner = [words[(7 * row + 13 * position) % len(words)] for position in range(length - 2)]
        ids[row, :length] = torch.tensor([bos, *inner, eos])
        mask[row, :length] = 1
    return ids.to(device), mask.to(device)
