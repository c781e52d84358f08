"""What the seam hands back for one model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PretrainedConfig

STOCK = "stock"


@dataclass(frozen=True)
class Runner:
    """What to run for one model, and what its callers need to know about it.

    A captioner's `run(pixel_values, max_new_tokens)` gives caption token ids as `generate()`
    does; a classifier's `run(input_ids, attention_mask)` gives the logits of `model(**inputs)`.
    """

    run: Callable[..., torch.Tensor]
    path: str  # STOCK, or the fast path's name
    config: PretrainedConfig
    input_dtype: torch.dtype
    device: torch.device
    # Stock captioners: the logits each position gives the next token, for given tokens.
    scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
