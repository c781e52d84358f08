"""Stage 4, inside: RoBERTa's classification forward pass, written as one lean function.

A reply classifies three short texts (about 60 tokens), so RoBERTa's time is mostly reading
its weights once; transformers' module structure, mask building and output objects add about
a tenth on top (side by side in bf16, three texts: 21.3–23.0 against 24.5–24.8 ms). This calls
the very same modules, so every precision of `core.precision` applies, with what a batch of
texts needs and nothing else. The texts run packed side by side (`core.text_packing`), not
padded to the longest. A test holds it to transformers' logits.

`fuse_query_key_value`, applied when the model is loaded (in every mode but fp32), also makes
each layer's query, key and value one product instead of three: each call of a layer costs
about 30 µs beyond its arithmetic here, and three texts took 22.4 against 23.7 ms side by side
in bf16.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional
from transformers import RobertaForSequenceClassification

from core.linear_layers import stack_linear_layers
from core.text_packing import pack_texts


def encodes_plainly(model: nn.Module) -> bool:
    """Whether `classify` gives what transformers' forward gives for this architecture."""
    if type(model) is not RobertaForSequenceClassification:
        return False
    config = model.config
    return getattr(config, "position_embedding_type", "absolute") == "absolute" and not (
        config.is_decoder or config.add_cross_attention
    )


def fuse_query_key_value(model: RobertaForSequenceClassification) -> None:
    """Stack each layer's query, key and value layers into one `qkv` layer, in place.

    The three go, so only `classify` can run the model afterwards, not transformers' forward.
    """
    for layer in model.roberta.encoder.layer:
        attention = layer.attention.self
        attention.qkv = stack_linear_layers([attention.query, attention.key, attention.value])
        del attention.query, attention.key, attention.value


def classify(
    model: RobertaForSequenceClassification,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """The logits of a padded batch of tokenized texts, run packed (`core.text_packing`)."""
    embeddings = model.roberta.embeddings
    packed = pack_texts(input_ids, attention_mask, embeddings.padding_idx)
    states = embeddings.LayerNorm(
        embeddings.word_embeddings(packed.input_ids)
        + embeddings.position_embeddings(packed.position_ids)
        + embeddings.token_type_embeddings.weight[0]
    )
    sequences, tokens, hidden = states.shape
    heads = model.config.num_attention_heads
    seen = packed.attention_mask()

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (heads, hidden // heads)).transpose(1, 2)

    for layer in model.roberta.encoder.layer:
        attention = layer.attention.self
        if hasattr(attention, "qkv"):  # `fuse_query_key_value`'s
            query, key, value = attention.qkv(states).split(hidden, dim=-1)
        else:
            query, key, value = (
                attention.query(states),
                attention.key(states),
                attention.value(states),
            )
        context = functional.scaled_dot_product_attention(
            split(query), split(key), split(value), attn_mask=seen
        )
        merged = context.transpose(1, 2).reshape(sequences, tokens, hidden)
        output = layer.attention.output
        states = output.LayerNorm(output.dense(merged) + states)
        hidden_states = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(states))
        states = layer.output.LayerNorm(layer.output.dense(hidden_states) + states)
    # The head reads each text's first token (`<s>`).
    return model.classifier(packed.firsts(states)[:, None])
