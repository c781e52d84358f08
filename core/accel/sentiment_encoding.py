"""Stage 4, inside: RoBERTa's classification forward pass, written as one lean function.

A reply classifies three short texts, so RoBERTa's time is mostly reading its weights once;
transformers' module structure, mask building and output objects add about a tenth on top
(docs/performance.md). This runs the very same layers, in whatever mode they were converted
to, with what a batch of texts needs and nothing else: the texts packed side by side
(`core.accel.text_packing`), the layers as bare calls bound once (`encoder_layers`), the
attention mask made once as an addend, and query, key and value split into heads by one view.
`core.accel` checks it against transformers' forward at every load.

`fuse_query_key_value` (every mode but fp32) also makes each layer's query, key and value one
product instead of three, as each call of a layer costs tens of microseconds beyond its
arithmetic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional
from transformers import RobertaForSequenceClassification, XLMRobertaForSequenceClassification

from core.accel.linear_layers import Product, product_of, stack_linear_layers
from core.accel.text_packing import pack_texts


def encodes_plainly(model: nn.Module) -> bool:
    """Whether `LeanPass` gives what transformers' forward gives for this architecture."""
    if type(model) not in (RobertaForSequenceClassification, XLMRobertaForSequenceClassification):
        return False
    config = model.config
    return getattr(config, "position_embedding_type", "absolute") == "absolute" and not (
        config.is_decoder or config.add_cross_attention
    )


def fuse_query_key_value(model: RobertaForSequenceClassification) -> None:
    """Stack each layer's query, key and value layers into one `qkv` layer, in place.

    The three go, so only `LeanPass` can run the model afterwards, not transformers' forward.
    """
    for layer in model.roberta.encoder.layer:
        attention = layer.attention.self
        attention.qkv = stack_linear_layers([attention.query, attention.key, attention.value])
        del attention.query, attention.key, attention.value


# RoBERTa's 12 layers as one call: (hidden states, attention addend) → hidden states.
Layers = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EncoderLayer:
    """One RoBERTa layer as bare calls (`core.accel.linear_layers.product_of`), bound at load time,
    or as calls of its modules, which `torch.export` can trace (`core.accel.sentiment_compiled`)."""

    query_key_value: Product  # hidden → 3 × hidden: query, key and value side by side
    attention_output: Product
    attention_norm: Product
    intermediate: Product  # its activation included
    output: Product
    output_norm: Product


def encoder_layers(
    model: RobertaForSequenceClassification, *, bare: bool = True
) -> tuple[EncoderLayer, ...]:
    """`model`'s layers, in whatever mode `core.precision` converted them to, as bare calls
    (or, with `bare=False`, as calls of their modules)."""
    product: Callable[[nn.Module], Product] = product_of if bare else _module
    norm: Callable[[nn.LayerNorm], Product] = _norm if bare else _module
    return tuple(_encoder_layer(layer, product, norm) for layer in model.roberta.encoder.layer)


def _encoder_layer(
    layer: nn.Module,
    product: Callable[[nn.Module], Product],
    norm: Callable[[nn.LayerNorm], Product],
) -> EncoderLayer:
    attention, intermediate = layer.attention, layer.intermediate
    if hasattr(attention.self, "qkv"):  # `fuse_query_key_value`'s
        query_key_value = product(attention.self.qkv)
    else:
        parts = (attention.self.query, attention.self.key, attention.self.value)
        query_key_value = _side_by_side([product(part) for part in parts])
    dense = product(intermediate.dense)
    if not isinstance(intermediate.intermediate_act_fn, nn.Identity):  # not fused (`fuse_gelu`)
        dense = _then(dense, intermediate.intermediate_act_fn)
    return EncoderLayer(
        query_key_value=query_key_value,
        attention_output=product(attention.output.dense),
        attention_norm=norm(attention.output.LayerNorm),
        intermediate=dense,
        output=product(layer.output.dense),
        output_norm=norm(layer.output.LayerNorm),
    )


def _module(module: nn.Module) -> Product:
    return module


def _side_by_side(products: Sequence[Product]) -> Product:
    return lambda x: torch.cat([product(x) for product in products], dim=-1)


def _then(product: Product, activation: nn.Module) -> Product:
    return lambda x: activation(product(x))


def _norm(norm: nn.LayerNorm) -> Product:
    shape, weight, bias, eps = norm.normalized_shape, norm.weight, norm.bias, norm.eps
    return lambda x: functional.layer_norm(x, shape, weight, bias, eps)


def run_layers(
    layers: Sequence[EncoderLayer], heads: int, states: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """The hidden states of packed texts (`core.accel.text_packing`) after all of `layers`."""
    sequences, tokens, hidden = states.shape
    by_head = (sequences, tokens, 3, heads, hidden // heads)
    for layer in layers:
        # (3, sequences, heads, tokens, head size): query, key and value, split into heads.
        query, key, value = layer.query_key_value(states).view(by_head).permute(2, 0, 3, 1, 4)
        context = functional.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        merged = context.transpose(1, 2).reshape(sequences, tokens, hidden)
        states = layer.attention_norm(layer.attention_output(merged) + states)
        states = layer.output_norm(layer.output(layer.intermediate(states)) + states)
    return states


class LeanPass:
    """`model`'s classification forward pass, its layers bound once (`encoder_layers`), or
    compiled for this CPU (`core.accel.sentiment_compiled`)."""

    def __init__(
        self, model: RobertaForSequenceClassification, layers: Layers | None = None
    ) -> None:
        self.model = model
        heads = model.config.num_attention_heads
        self.layers = layers or functools.partial(run_layers, encoder_layers(model), heads)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The logits of a padded batch of tokenized texts, run packed (`text_packing`)."""
        model = self.model
        embeddings = model.roberta.embeddings
        packed = pack_texts(input_ids, attention_mask, embeddings.padding_idx)
        states = embeddings.LayerNorm(
            embeddings.word_embeddings(packed.input_ids)
            + embeddings.position_embeddings(packed.position_ids)
            + embeddings.token_type_embeddings.weight[0]
        )
        states = self.layers(states, packed.attention_bias(states.dtype))
        # The head reads each text's first token (`<s>`).
        return model.classifier(packed.firsts(states)[:, None])
