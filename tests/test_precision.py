import logging

import pytest
import torch

from core import precision
from core.accel.linear_layers import packing_available
from core.captioner import Captioner
from core.config import Settings
from core.errors import ConfigError
from core.images import load_image
from core.pipeline import Pipeline
from core.precision import (
    AUTO,
    BF16,
    BF16_INT8_DECODER,
    CAPTION,
    FP16,
    FP32,
    FP32_INT8_DECODER,
    INT8,
    MODES,
    SENTIMENT,
    Hardware,
)
from core.sentiment import SentimentClassifier
from tests.hardware import (
    CPU_WITH_BF16,
    CPU_WITHOUT_BF16,
    GPU,
    OLD_GPU,
    THIS_GPU,
    needs_gpu,
    on_gpu,
)
from tests.pictures import picture
from tests.tiny_models import SENTIMENT_LABELS

IMAGES = [load_image(picture((40, 30), colour)) for colour in [(255, 0, 0), (0, 0, 255)]]
TEXTS = ["sunflowers in a field. I am so happy", "sunflowers in a field", "life is hard"]


ON_THE_CPU_AND_GPU = [
    (FP32, CPU_WITH_BF16),
    (BF16, CPU_WITH_BF16),
    (INT8, CPU_WITH_BF16),
    on_gpu(BF16, THIS_GPU),
    on_gpu(FP16, THIS_GPU),
]


@pytest.mark.parametrize(("mode", "hardware"), ON_THE_CPU_AND_GPU)
def test_each_mode_captions_every_photo(tiny_models, mode, hardware):
    captioner = Captioner.from_pretrained(
        str(tiny_models.caption), precision=mode, hardware=hardware
    )
    captions = captioner(IMAGES)
    assert captioner.precision == mode
    assert len(captions) == 2 and all(isinstance(c, str) and c for c in captions)


@pytest.mark.parametrize(("mode", "hardware"), ON_THE_CPU_AND_GPU)
def test_each_mode_scores_every_text_with_the_models_labels(tiny_models, mode, hardware):
    classifier = SentimentClassifier.from_pretrained(
        str(tiny_models.sentiment), precision=mode, hardware=hardware
    )
    results = classifier(TEXTS)
    assert classifier.precision == mode
    assert len(results) == 3
    for result in results:
        assert set(result.scores) == set(SENTIMENT_LABELS.values())
        assert sum(result.scores.values()) == pytest.approx(1, abs=1e-3)
        assert result.label == max(result.scores, key=result.scores.get)


def test_bf16_runs_the_weights_in_bfloat16(tiny_models):
    captioner = Captioner.from_pretrained(
        str(tiny_models.caption), precision=BF16, hardware=CPU_WITH_BF16
    )
    classifier = SentimentClassifier.from_pretrained(
        str(tiny_models.sentiment), precision=BF16, hardware=CPU_WITH_BF16
    )
    assert captioner.runner.input_dtype == classifier.runner.input_dtype == torch.bfloat16


@pytest.mark.skipif(not packing_available(), reason="this CPU has no native bf16 for oneDNN")
def test_bf16_on_the_cpu_prepacks_every_linear_layer_and_answers_the_same(tiny_models):
    plain = SentimentClassifier.from_pretrained(
        str(tiny_models.sentiment), precision=BF16, hardware=CPU_WITH_BF16, accelerate=False
    )
    packed = SentimentClassifier.from_pretrained(
        str(tiny_models.sentiment), precision=BF16, hardware=CPU_WITH_BF16
    )
    assert "prepacked bf16 weights" in packed.runner.path
    for a, b in zip(plain(TEXTS), packed(TEXTS), strict=True):
        assert b.label == a.label and b.scores == pytest.approx(a.scores, abs=0.01)


@pytest.mark.parametrize("hardware", [CPU_WITH_BF16, CPU_WITHOUT_BF16])
def test_int8_output_stays_close_to_fp32(tiny_models, hardware):
    fp32 = SentimentClassifier.from_pretrained(str(tiny_models.sentiment), precision=FP32)
    int8 = SentimentClassifier.from_pretrained(
        str(tiny_models.sentiment), precision=INT8, hardware=hardware
    )
    for a, b in zip(fp32(TEXTS), int8(TEXTS), strict=True):
        assert b.scores == pytest.approx(a.scores, abs=0.1)


def test_bf16_without_cpu_support_falls_back_to_fp32_with_a_log_line(tiny_models, caplog):
    with caplog.at_level(logging.WARNING, logger="core.precision"):
        captioner = Captioner.from_pretrained(
            str(tiny_models.caption), precision=BF16, hardware=CPU_WITHOUT_BF16
        )
    assert captioner.precision == FP32
    assert captioner.runner.input_dtype == torch.float32
    assert "CAPTION_PRECISION=bf16" in caplog.text
    assert "avx512_bf16 or AMX" in caplog.text and "runs in fp32 instead" in caplog.text


@pytest.mark.parametrize(
    ("requested", "hardware", "expected"),
    [
        (BF16, CPU_WITH_BF16, BF16),
        (BF16, CPU_WITHOUT_BF16, FP32),
        (FP16, CPU_WITH_BF16, FP32),
        (INT8, CPU_WITHOUT_BF16, INT8),
        (INT8, Hardware(device="cpu", int8=False), FP32),
        (INT8, GPU, BF16),
        (INT8, OLD_GPU, FP16),
        (BF16, OLD_GPU, FP16),
        (FP16, GPU, FP16),
        (FP32, GPU, FP32),
        (BF16_INT8_DECODER, CPU_WITH_BF16, BF16_INT8_DECODER),
        (BF16_INT8_DECODER, CPU_WITHOUT_BF16, FP32_INT8_DECODER),
        (FP32_INT8_DECODER, CPU_WITHOUT_BF16, FP32_INT8_DECODER),
        (BF16_INT8_DECODER, GPU, BF16),
    ],
)
def test_a_mode_the_hardware_runs_badly_is_replaced(requested, hardware, expected):
    assert precision.resolve(requested, model=CAPTION, hardware=hardware) == expected


@pytest.mark.parametrize(
    "hardware",
    [CPU_WITH_BF16, CPU_WITHOUT_BF16, GPU, OLD_GPU],
)
@pytest.mark.parametrize("model", [CAPTION, SENTIMENT])
def test_auto_resolves_to_a_concrete_mode_the_hardware_runs(model, hardware, caplog):
    with caplog.at_level(logging.INFO, logger="core.precision"):
        chosen = precision.resolve(AUTO, model=model, hardware=hardware, variable="X")
    assert chosen in MODES
    assert precision.resolve(chosen, model=model, hardware=hardware) == chosen
    assert f"X=auto: {model} model runs in {chosen}" in caplog.text


def test_auto_choices_on_the_cpu():
    # Every CPU class decodes captions in int8; bf16 where the CPU runs it, else int8.
    assert precision.resolve(AUTO, model=CAPTION, hardware=CPU_WITH_BF16) == BF16_INT8_DECODER
    assert precision.resolve(AUTO, model=SENTIMENT, hardware=CPU_WITH_BF16) == BF16
    assert precision.resolve(AUTO, model=CAPTION, hardware=CPU_WITHOUT_BF16) == INT8
    assert precision.resolve(AUTO, model=SENTIMENT, hardware=CPU_WITHOUT_BF16) == INT8


def test_auto_loads_and_runs(tiny_models):
    classifier = SentimentClassifier.from_pretrained(
        str(tiny_models.sentiment), precision=AUTO, hardware=CPU_WITHOUT_BF16
    )
    assert classifier.precision == INT8 and len(classifier(TEXTS)) == 3
    captioner = Captioner.from_pretrained(
        str(tiny_models.caption), precision=AUTO, hardware=CPU_WITH_BF16
    )
    assert captioner.precision == BF16_INT8_DECODER and all(captioner(IMAGES))


def test_bf16_support_is_read_from_the_cpu_flags(tmp_path):
    assert Hardware.for_cpu({"avx2", "avx512f", "avx512_bf16"}).bf16
    assert Hardware.for_cpu({"amx_bf16", "amx_tile"}).bf16
    assert not Hardware.for_cpu({"avx2", "avx512f", "avx512_vnni"}).bf16
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_bf16\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "sse", "avx2", "avx512_bf16"}


def test_detect_finds_this_machines_device():
    hardware = Hardware.detect()
    assert hardware.device == ("cuda" if torch.cuda.is_available() else "cpu")


def settings(**env: str) -> Settings:
    return Settings.from_env(env, dotenv_path=None)


def test_each_model_follows_model_precision_unless_set_on_its_own():
    s = settings(MODEL_PRECISION="INT8")
    assert (s.model_precision, s.caption_precision, s.sentiment_precision) == (INT8,) * 3
    s = settings(MODEL_PRECISION="auto", CAPTION_PRECISION="fp32", SENTIMENT_PRECISION=" ")
    assert (s.caption_precision, s.sentiment_precision) == (FP32, AUTO)


@pytest.mark.parametrize("name", ["MODEL_PRECISION", "CAPTION_PRECISION", "SENTIMENT_PRECISION"])
def test_an_unknown_precision_names_the_variable_and_the_choices(name):
    with pytest.raises(ConfigError, match=rf"{name}='fp8' is not accepted: use one of fp32, bf16"):
        settings(**{name: "fp8"})


def test_the_pipeline_loads_each_model_in_its_precision(tiny_models):
    pipeline = Pipeline.from_settings(
        settings(
            CAPTION_MODEL=str(tiny_models.caption),
            SENTIMENT_MODEL=str(tiny_models.sentiment),
            CAPTION_PRECISION="fp32",
            SENTIMENT_PRECISION="int8",
        )
    )
    # int8 is for CPUs; on a GPU it runs in half precision.
    expected = precision.resolve(INT8, model=SENTIMENT, hardware=Hardware.detect())
    assert (pipeline.captioner.precision, pipeline.classifier.precision) == (FP32, expected)
    analysis = pipeline.analyze("what a day", image=picture((40, 40), (250, 200, 0)))
    assert analysis.sentiment.label in SENTIMENT_LABELS.values()


@needs_gpu
def test_on_a_gpu_attention_does_not_build_a_cudnn_plan_per_batch_size(tiny_models):
    """With cuDNN's attention, the first bf16 caption of each batch size took a second more."""
    Captioner.from_pretrained(str(tiny_models.caption), precision=BF16, hardware=THIS_GPU)
    assert not torch.backends.cuda.cudnn_sdp_enabled()


@needs_gpu
def test_auto_on_a_gpu_runs_both_models_there_in_half_precision(tiny_models):
    pipeline = Pipeline.from_settings(
        settings(CAPTION_MODEL=str(tiny_models.caption), SENTIMENT_MODEL=str(tiny_models.sentiment))
    )
    half = BF16 if THIS_GPU.bf16 else FP16
    assert (pipeline.captioner.precision, pipeline.classifier.precision) == (half, half)
    for model in (pipeline.captioner.model, pipeline.classifier.model):
        assert {p.device.type for p in model.parameters()} == {"cuda"}
        assert {p.dtype for p in model.parameters()} == {precision.LOAD_DTYPES[half]}
    on_the_cpu = SentimentClassifier.from_pretrained(
        str(tiny_models.sentiment), precision=FP32, hardware=CPU_WITH_BF16
    )
    analysis = pipeline.analyze("what a day", image=picture((40, 40), (250, 200, 0)))
    expected = on_the_cpu([analysis.combined])[0]
    assert analysis.sentiment.label == expected.label
    assert analysis.sentiment.scores == pytest.approx(expected.scores, abs=0.03)
