"""Stage 2, inside: BLIP's greedy caption decoding, written as one lean loop.

`generate()` spends about a third of each decoding step outside the model's layers: cache
objects, attention masks, logits processors and stopping criteria, rebuilt at every token.
This loop calls the very same modules (so every precision of `core.precision` applies) with
what greedy decoding of one image prompt needs and nothing else:

- the image's cross-attention keys and values are computed once, before the first token;
- self-attention keys and values go into one buffer allocated up front;
- attention is PyTorch's fused `scaled_dot_product_attention`. No mask is needed: the prompt
  is one [DEC] token for every photo, so all rows have the same length, and a step's query
  is the newest token, which may see every earlier one.

It returns what `generate()` returns (a test holds them token for token): [DEC], then the
tokens, and [PAD] after a caption's [SEP] while other photos of the batch go on. Anything
beyond plain greedy decoding (beams, or a checkpoint whose generation config changes the
scores) goes through `generate()`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch.nn import functional
from transformers import BlipForConditionalGeneration, GenerationConfig
from transformers.models.blip.modeling_blip_text import BlipTextLMHeadModel

from core.config import GenerationSettings

# One decoding step: the newest tokens, (batch, 1), and their position in; the next tokens out.
Step = Callable[[torch.Tensor, int], torch.Tensor]
# The steps for one batch of photos: their vision encoder output and the most tokens to come.
Steps = Callable[[torch.Tensor, int], Step]

# Generation settings the lean loop is known to honour, at any value; any other setting that
# differs from its default (beams, sampling, penalties, forced or suppressed tokens...) sends
# captions through `generate()`.
SAFE_SETTINGS = frozenset(
    {
        "bos_token_id",
        "decoder_start_token_id",
        "eos_token_id",
        "pad_token_id",
        "sep_token_id",
        "max_length",
        "max_new_tokens",
        "use_cache",
        "output_attentions",
        "output_hidden_states",
        "transformers_version",
        "_from_model_config",
    }
)


def unsafe_generation_settings(
    config: GenerationConfig, generation: GenerationSettings
) -> list[str]:
    """What in the model's generation config or ours the lean loop does not honour."""
    unsafe = sorted(set(config.to_diff_dict()) - SAFE_SETTINGS)
    if generation.num_beams != 1:
        unsafe.append(f"num_beams={generation.num_beams}")
    return unsafe


def decode_greedily(
    model: BlipForConditionalGeneration, pixel_values: torch.Tensor, max_new_tokens: int
) -> torch.Tensor:
    """Caption token ids for a batch of preprocessed photos, as `model.generate()` gives them."""
    image_embeds = model.vision_model(pixel_values=pixel_values)[0]
    decoder = model.text_decoder
    # The decoder may be `core.accel.onnx_decoder.OnnxTextDecoder`, with steps of its own.
    steps: Steps = getattr(decoder, "greedy_steps", None) or partial(_torch_steps, decoder)
    step = steps(image_embeds, max_new_tokens)
    text = model.config.text_config
    batch, device = image_embeds.shape[0], image_embeds.device
    tokens = torch.full((batch, 1), text.bos_token_id, dtype=torch.long, device=device)
    generated = [tokens]
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    for position in range(max_new_tokens):
        tokens = step(tokens, position)
        tokens[finished] = text.pad_token_id
        generated.append(tokens)
        finished |= tokens[:, 0] == text.sep_token_id
        if finished.all():
            break
    return torch.cat(generated, dim=1)


def _torch_steps(
    decoder: BlipTextLMHeadModel, image_embeds: torch.Tensor, max_new_tokens: int
) -> Step:
    """Steps through transformers' own modules, in whatever precision they were converted to."""
    text = decoder.config
    embeddings, layers = decoder.bert.embeddings, decoder.bert.encoder.layer
    heads = text.num_attention_heads
    image_keys = [
        split_heads(layer.crossattention.self.key(image_embeds), heads) for layer in layers
    ]
    image_values = [
        split_heads(layer.crossattention.self.value(image_embeds), heads) for layer in layers
    ]
    cache_shape = (len(layers), len(image_embeds), heads, max_new_tokens, text.hidden_size // heads)
    keys = image_embeds.new_empty(cache_shape)
    values = image_embeds.new_empty(cache_shape)

    def step(tokens: torch.Tensor, position: int) -> torch.Tensor:
        states = embeddings.LayerNorm(
            embeddings.word_embeddings(tokens) + embeddings.position_embeddings.weight[position]
        )
        seen = slice(0, position + 1)
        for index, layer in enumerate(layers):
            attention = layer.attention.self
            keys[index, :, :, position] = split_heads(attention.key(states), heads)[:, :, 0]
            values[index, :, :, position] = split_heads(attention.value(states), heads)[:, :, 0]
            context = functional.scaled_dot_product_attention(
                split_heads(attention.query(states), heads),
                keys[index, :, :, seen],
                values[index, :, :, seen],
            )
            states = _add_and_norm(layer.attention.output, context, states)
            context = functional.scaled_dot_product_attention(
                split_heads(layer.crossattention.self.query(states), heads),
                image_keys[index],
                image_values[index],
            )
            states = _add_and_norm(layer.crossattention.output, context, states)
            hidden = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(states))
            states = layer.output.LayerNorm(layer.output.dense(hidden) + states)
        return decoder.cls(states)[:, -1].argmax(-1, keepdim=True)

    return step


def split_heads(states: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, tokens, hidden) → (batch, heads, tokens, head size)"""
    batch, tokens, hidden = states.shape
    return states.view(batch, tokens, heads, hidden // heads).transpose(1, 2)


def _add_and_norm(
    output: torch.nn.Module, context: torch.Tensor, states: torch.Tensor
) -> torch.Tensor:
    """BERT's attention output: merge the heads, project, add the residual, LayerNorm."""
    batch, heads, tokens, head_size = context.shape
    merged = context.transpose(1, 2).reshape(batch, tokens, heads * head_size)
    return output.LayerNorm(output.dense(merged) + states)
