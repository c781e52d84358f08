"""Stage 4, inside: several short texts laid out as one sequence, so RoBERTa multiplies fewer rows.

A reply classifies three texts, and the longest (the combined one) is about as long as the
other two together: packed side by side they take about two thirds of the rows that padding
to the longest takes. Each text still sees only its own tokens (`attention_mask`) and numbers
its own positions, so its logits are the same as alone.

The row count is rounded up to a multiple of 16, the rows of one AMX tile: in bf16, oneDNN
and the compiled layers sum the rows of a last, partial tile in another order, so a text
there would get other logits than alone, and its score would depend on its batch. Whole tiles
are also a fast count for oneDNN (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# A sequence takes texts up to this many tokens in all, or the longest text's, if longer:
# attention grows with the square of a sequence's length, the linear layers only with its rows.
# Eight replies' 24 texts (321 tokens), side by side: 57 ms in sequences of 64, 62 of 128,
# 104 of 256, 64 as one of 328.
SEQUENCE_TOKENS = 64
ROW_MULTIPLE = 16


@dataclass(frozen=True)
class PackedTexts:
    """Tokens of several texts side by side: shape (sequences, length) for the first three."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    # Which text each token belongs to; -1 for the padding at the end of a sequence.
    texts: torch.Tensor
    # Where each text's first token (`<s>`, which the classifier reads) sits, in input order.
    first_sequence: torch.Tensor
    first_offset: torch.Tensor

    def attention_mask(self) -> torch.Tensor:
        """(sequences, 1, length, length): a token sees the tokens of its own text only.

        Padding sees padding, so no row of the attention is empty.
        """
        return (self.texts[:, :, None] == self.texts[:, None, :])[:, None]

    def attention_bias(self, dtype: torch.dtype) -> torch.Tensor:
        """`attention_mask` as the scores' addend (0 or -inf), made once for every layer.

        Given the boolean mask, attention converts it again in each of RoBERTa's 12 layers.
        """
        mask = self.attention_mask()
        bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        return bias.masked_fill_(~mask, float("-inf"))

    def firsts(self, states: torch.Tensor) -> torch.Tensor:
        """Each text's first token from `states` of shape (sequences, length, ...)."""
        return states[self.first_sequence, self.first_offset]


def pack_texts(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, padding_idx: int
) -> PackedTexts:
    """Lay a padded batch of tokenized texts out in as few sequences as fit.

    Longest text first, each into the first sequence with room (first-fit decreasing).
    Positions count from `padding_idx + 1` in every text, as RoBERTa numbers them.
    """
    real = attention_mask.bool()
    lengths = real.sum(dim=1).tolist()
    capacity = max(max(lengths), SEQUENCE_TOKENS)
    filled: list[int] = []
    sequence_of, offset_of = [0] * len(lengths), [0] * len(lengths)
    for text in sorted(range(len(lengths)), key=lambda index: -lengths[index]):
        sequence = next(
            (s for s, used in enumerate(filled) if used + lengths[text] <= capacity),
            len(filled),
        )
        if sequence == len(filled):
            filled.append(0)
        sequence_of[text], offset_of[text] = sequence, filled[sequence]
        filled[sequence] += lengths[text]
    length = -(-max(filled) // ROW_MULTIPLE) * ROW_MULTIPLE

    first_sequence = torch.tensor(sequence_of, device=input_ids.device)
    first_offset = torch.tensor(offset_of, device=input_ids.device)
    text_of_token = real.nonzero()[:, 0]
    within = real.cumsum(dim=1)[real]  # 1 for each text's first token
    rows = first_sequence[text_of_token]
    columns = first_offset[text_of_token] + within - 1
    shape = (len(filled), length)
    packed_ids = input_ids.new_full(shape, padding_idx)
    packed_ids[rows, columns] = input_ids[real]
    position_ids = input_ids.new_full(shape, padding_idx)
    position_ids[rows, columns] = within + padding_idx
    texts = input_ids.new_full(shape, -1)
    texts[rows, columns] = text_of_token
    return PackedTexts(packed_ids, position_ids, texts, first_sequence, first_offset)
