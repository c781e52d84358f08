"""Every fast path against stock transformers, and the fallback when one is broken.

Hardware is given, not detected, so each CPU class's choices run on any machine; only the
kernels' speed differs from one CPU to the next.
"""

import logging

import pytest
import torch
from transformers import BlipForConditionalGeneration

import core.accel
from core import accel
from core.accel import fast_paths
from core.accel.convert import to_stock_form
from core.accel.int8 import Int8Layer
from core.captioner import Captioner
from core.config import GenerationSettings, Settings
from core.images import load_image
from core.precision import (
    AUTO,
    BF16,
    BF16_INT8_DECODER,
    FP32,
    INT8,
    Hardware,
    cap_flags,
    cpu_class,
)
from core.sentiment import SentimentClassifier
from tests.hardware import CPU_WITH_BF16, CPU_WITHOUT_BF16
from tests.pictures import picture

IMAGES = [
    load_image(picture((40, 30), colour)) for colour in [(255, 0, 0), (0, 90, 255), (20, 200, 60)]
]
TEXTS = ["sunflowers in a field. I am so happy", "sunflowers in a field", "life is hard", "ok"]
AMX_FLAGS = {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16"}

# (mode, hardware): every mode on both kinds of CPU, `auto` included.
MODES = [
    (FP32, CPU_WITHOUT_BF16),
    (INT8, CPU_WITHOUT_BF16),
    (AUTO, CPU_WITHOUT_BF16),
    (BF16, CPU_WITH_BF16),
    (INT8, CPU_WITH_BF16),
    (AUTO, CPU_WITH_BF16),
]
# How far a fast path's probabilities may be from stock's in the same mode.
CLOSE = {FP32: 1e-5, INT8: 1e-2, BF16: 2e-2, AUTO: 2e-2}


def captioners(tiny_models, mode, hardware):
    return [
        Captioner.from_pretrained(
            str(tiny_models.caption), precision=mode, hardware=hardware, accelerate=accelerate
        )
        for accelerate in (True, False)
    ]


def classifiers(tiny_models, mode, hardware):
    return [
        SentimentClassifier.from_pretrained(
            str(tiny_models.sentiment), precision=mode, hardware=hardware, accelerate=accelerate
        )
        for accelerate in (True, False)
    ]


@pytest.mark.parametrize(("mode", "hardware"), MODES)
def test_the_fast_captioner_runs_and_says_what_stock_says(tiny_models, mode, hardware):
    fast, stock = captioners(tiny_models, mode, hardware)
    assert fast.runner.path != accel.STOCK and stock.runner.path == accel.STOCK
    if mode == FP32:
        assert fast(IMAGES) == stock(IMAGES)
    # Elsewhere an activation on a rounding boundary may tip a near tie: each token the fast
    # path picks must be within the mode's tolerance of stock's best.
    tolerance = accel.TOLERANCE[stock.precision.split("+")[0]]
    for image in IMAGES:
        pixels = stock.preprocess([image])["pixel_values"].to(stock.runner.input_dtype)
        with torch.inference_mode():
            tokens = fast.runner.run(pixels, fast.generation.max_new_tokens)
            assert accel.tokens_behind(stock.runner, pixels, tokens, tolerance) == ""


@pytest.mark.parametrize(("mode", "hardware"), MODES)
def test_the_fast_classifier_runs_and_scores_as_stock_does(tiny_models, mode, hardware):
    fast, stock = classifiers(tiny_models, mode, hardware)
    assert fast.runner.path != accel.STOCK and stock.runner.path == accel.STOCK
    for ours, theirs in zip(fast(TEXTS), stock(TEXTS), strict=True):
        assert ours.label == theirs.label
        assert ours.scores == pytest.approx(theirs.scores, abs=CLOSE[mode])


# Stock transformers in bf16 pad texts to the longest and round the padded attention in
# bf16, so a text's scores move with its batch (by about 1e-3): only the fast path, which
# packs texts, holds them still there.
INVARIANT = [
    *((mode, hardware, True) for mode, hardware in MODES),
    *((mode, hardware, False) for mode, hardware in MODES if hardware is CPU_WITHOUT_BF16),
]


@pytest.mark.parametrize(("mode", "hardware", "accelerate"), INVARIANT)
def test_a_result_is_the_same_alone_or_batched_with_other_chats(
    tiny_models, mode, hardware, accelerate
):
    captioner = Captioner.from_pretrained(
        str(tiny_models.caption), precision=mode, hardware=hardware, accelerate=accelerate
    )
    batched = captioner(IMAGES)
    assert [captioner([image])[0] for image in IMAGES] == batched
    classifier = SentimentClassifier.from_pretrained(
        str(tiny_models.sentiment), precision=mode, hardware=hardware, accelerate=accelerate
    )
    together = classifier(TEXTS)
    for text, result in zip(TEXTS, together, strict=True):
        (alone,) = classifier([text])
        assert alone.label == result.label
        assert alone.scores == pytest.approx(result.scores, abs=1e-5)


def test_a_fast_path_that_fails_to_build_leaves_stock_with_one_warning(
    tiny_models, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise RuntimeError("export went wrong")

    monkeypatch.setattr(core.accel, "fast_captioner", broken)
    fast, stock = captioners(tiny_models, AUTO, CPU_WITHOUT_BF16)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "export went wrong" in warnings[0].getMessage()
    assert fast.runner.path == accel.STOCK
    assert fast(IMAGES) == stock(IMAGES)


def test_a_fast_captioner_that_answers_otherwise_leaves_stock(tiny_models, monkeypatch, caplog):
    decode = fast_paths.decode_greedily

    def off_by_one(model, pixel_values, max_new_tokens):
        tokens = decode(model, pixel_values, max_new_tokens)
        tokens[:, 1:] = (tokens[:, 1:] + 1) % model.config.text_config.vocab_size
        return tokens

    monkeypatch.setattr(fast_paths, "decode_greedily", off_by_one)
    fast, stock = captioners(tiny_models, FP32, CPU_WITHOUT_BF16)
    assert fast.runner.path == accel.STOCK
    assert "behind stock's best" in caplog.text
    assert fast(IMAGES) == stock(IMAGES)


def test_a_fast_classifier_that_answers_otherwise_leaves_stock(tiny_models, monkeypatch, caplog):
    lean = fast_paths.LeanPass

    class Skewed(lean):
        def __call__(self, input_ids, attention_mask):
            return super().__call__(input_ids, attention_mask) + torch.tensor([1.0, 0.0, 0.0])

    monkeypatch.setattr(fast_paths, "LeanPass", Skewed)
    fast, stock = classifiers(tiny_models, INT8, CPU_WITHOUT_BF16)
    assert fast.runner.path == accel.STOCK
    assert "logits on the probe" in caplog.text
    for ours, theirs in zip(fast(TEXTS), stock(TEXTS), strict=True):
        assert ours.scores == pytest.approx(theirs.scores, abs=1e-6)


def test_settings_the_fast_loop_does_not_know_go_through_generate(tiny_models, caplog):
    caplog.set_level(logging.INFO)
    beams = Captioner.from_pretrained(
        str(tiny_models.caption),
        generation=GenerationSettings(num_beams=2),
        hardware=CPU_WITHOUT_BF16,
    )
    assert beams.runner.path == accel.STOCK
    assert "num_beams=2" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert all(beams(IMAGES))


def test_acceleration_off_is_a_setting():
    assert Settings.from_env({}, dotenv_path=None).acceleration
    assert not Settings.from_env({"ACCELERATION": "off"}, dotenv_path=None).acceleration


@pytest.mark.parametrize(
    ("cap", "bf16", "amx", "name"),
    [
        ("", True, True, "amx"),
        ("avx512_bf16", True, False, "avx512_bf16"),
        ("avx512", False, False, "avx512"),
        ("avx2", False, False, "avx2"),
    ],
)
def test_a_cpu_can_act_as_a_lesser_class(cap, bf16, amx, name):
    flags = cap_flags(AMX_FLAGS, cap)
    hardware = Hardware.for_cpu(flags)
    assert (hardware.bf16, hardware.amx, cpu_class(flags)) == (bf16, amx, name)


def test_the_cpu_class_is_a_setting():
    assert Settings.from_env({"MOOD_CPU_CLASS": "AVX2"}, dotenv_path=None).cpu_class == "avx2"
    assert Settings.from_env({}, dotenv_path=None).cpu_class == ""


def test_int8_layers_keep_float32_scales_in_a_bf16_model(tiny_models):
    model = BlipForConditionalGeneration.from_pretrained(str(tiny_models.caption))
    to_stock_form(model, BF16_INT8_DECODER)
    int8 = [layer for layer in model.modules() if isinstance(layer, Int8Layer)]
    assert int8 and all(layer.scales.dtype == torch.float32 for layer in int8)
    assert model.vision_model.embeddings.patch_embedding.weight.dtype == torch.bfloat16
    assert model.text_decoder.bert.embeddings.LayerNorm.weight.dtype == torch.bfloat16
