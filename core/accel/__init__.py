"""Model internals behind one seam: one function per model returns what to run.

`caption_runner` and `sentiment_runner` take a function that loads the stock transformers
model (as `from_pretrained` reads it) and the mode it runs in (`core.precision`). With
acceleration off they return stock transformers, converted to that mode: `generate()` and
`model(**inputs)`. With it on, stock runs once on a fixed probe and its answers are kept;
then the fast path for this model, mode and hardware is built and checked against them: the
same caption tokens, and logits within `TOLERANCE` of the mode. A fast path that fails to
build, or that answers otherwise, is dropped: the model runs stock, with one warning that
says why. The captioner's fast path is built in place from the stock model it was checked
against (its int8 layers go into the ONNX graphs as they are); the classifier's from a fresh
load once the reference is let go. So no mode holds two copies of the weights, even while
loading; only a fast caption that differs from stock's loads stock again, to judge it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import BlipForConditionalGeneration, PreTrainedModel

from core.accel.fast_paths import NotSupported, fast_captioner, fast_classifier
from core.accel.probes import PROBE_TOKENS, caption_probe, text_probe
from core.accel.runner import STOCK, Runner
from core.accel.stock import stock_captioner, stock_classifier
from core.config import GenerationSettings
from core.memory import release_freed_memory
from core.precision import BF16, FP16, FP32, INT8, INT8_DECODER_BASES, Hardware

__all__ = [
    "STOCK",
    "TOLERANCE",
    "Runner",
    "caption_runner",
    "sentiment_runner",
]

log = logging.getLogger(__name__)

# How far a fast path's logits may be from stock's in the same mode, on the probe. fp32 paths
# compute the same numbers in another order. int8 paths too, but an activation that lands
# on a rounding boundary may round the other way; half precision rounds each product in a
# kernel-dependent order.
TOLERANCE = {FP32: 1e-3, INT8: 0.1, BF16: 0.1, FP16: 0.1}


def caption_runner(
    load: Callable[[], BlipForConditionalGeneration],
    mode: str,
    hardware: Hardware,
    generation: GenerationSettings,
    *,
    accelerate: bool = True,
) -> Runner:
    """A captioner: `Runner.run(pixel_values, max_new_tokens)`."""

    def stock() -> Runner:
        return stock_captioner(load(), mode, generation)

    if not accelerate:
        return stock()
    model = load()
    reference = stock_captioner(model, mode, generation)
    probe = caption_probe(reference.config, reference.device, reference.input_dtype)
    with torch.inference_mode():
        expected = reference.run(probe, PROBE_TOKENS).cpu()
    del reference
    tolerance = TOLERANCE[INT8_DECODER_BASES.get(mode, mode)]

    def differs(fast: Runner) -> str:
        tokens = fast.run(probe, PROBE_TOKENS).cpu()
        if torch.equal(tokens, expected):
            return ""
        # Another caption: stock, loaded again, says whether each token was a near tie.
        return tokens_behind(stock(), probe, tokens, tolerance)

    # Built from the very model stock ran, now in its mode's form: one load, one conversion.
    return _checked(
        "caption", stock, lambda: fast_captioner(model, mode, hardware, generation), differs
    )


def sentiment_runner(
    load: Callable[[], PreTrainedModel],
    mode: str,
    hardware: Hardware,
    *,
    accelerate: bool = True,
    compile_dir: Path | None = None,
) -> Runner:
    """A classifier: `Runner.run(input_ids, attention_mask)`."""

    def stock() -> Runner:
        return stock_classifier(load(), mode)

    if not accelerate:
        return stock()
    reference = stock()
    input_ids, attention_mask = text_probe(reference.config, reference.device)
    with torch.inference_mode():
        expected = reference.run(input_ids, attention_mask).float()
    del reference
    tolerance = TOLERANCE[INT8_DECODER_BASES.get(mode, mode)]
    return _checked(
        "sentiment",
        stock,
        lambda: fast_classifier(load(), mode, hardware, compile_dir),
        lambda fast: _logits_differ(expected, fast.run(input_ids, attention_mask), tolerance),
    )


def _checked(
    model: str,
    stock: Callable[[], Runner],
    build: Callable[[], Runner],
    differs: Callable[[Runner], str],
) -> Runner:
    """The fast path `build` makes, if it builds and `differs` finds nothing; else stock."""
    try:
        fast = build()
        with torch.inference_mode():
            mismatch = differs(fast)
    except NotSupported as reason:
        log.info("The %s model runs stock transformers: %s", model, reason)
        return stock()
    except Exception as error:  # any failure of a fast path: stock transformers still run
        mismatch = f"building or running it failed ({type(error).__name__}: {error})"
    if mismatch:
        log.warning(
            "The %s model's fast path is off and it runs stock transformers: %s", model, mismatch
        )
        return stock()
    release_freed_memory()  # the reference's copies, freed
    log.info("The %s model runs %s, checked against stock transformers", model, fast.path)
    return fast


def tokens_behind(
    reference: Runner, probe: torch.Tensor, tokens: torch.Tensor, tolerance: float
) -> str:
    """Whether stock transformers, fed the fast path's caption of the probe, would have picked
    a token more than `tolerance` (in logits) ahead of one the fast path picked. Equal tokens
    pass; so does a near tie that rounding decided otherwise."""
    logits = reference.scores(probe, tokens.to(reference.device))[0, :-1].float().cpu()
    chosen, sep = tokens[0, 1:].cpu(), reference.config.text_config.sep_token_id
    for step, (row, token) in enumerate(zip(logits, chosen.tolist(), strict=True)):
        behind = (row.max() - row[token]).item()
        if behind > tolerance:
            return f"its caption token {step + 1} on the probe was {behind:.3g} behind stock's best"
        if token == sep:
            break
    return ""


def _logits_differ(expected: torch.Tensor, got: torch.Tensor, tolerance: float) -> str:
    difference = (got.float().cpu() - expected.cpu()).abs().max().item()
    if difference <= tolerance:
        return ""
    return f"its logits on the probe were {difference:.3g} from stock's (allowed {tolerance})"
