import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from transformers.models.blip.modeling_blip_text import BlipTextLayer, BlipTextLMHeadModel

from core.accel.onnx_decoder import ImageKeysValues, OnnxTextDecoder, quantize_blocks
from core.captioner import Captioner
from core.config import GenerationSettings
from core.images import load_image
from core.precision import AUTO, BF16, BF16_INT8_DECODER, FP32, FP32_INT8_DECODER, INT8
from tests.child_env import child_env
from tests.hardware import CPU_WITH_BF16, CPU_WITH_BF16_AND_VNNI, CPU_WITH_VNNI_ONLY
from tests.pictures import picture
from tests.test_caption_decoding import COLOURS, photos

SETTINGS = GenerationSettings(max_new_tokens=12)
# The tiny model's random weights leave some words a near tie with the runner-up: int8 tipped
# one whose logit was 0.008 above the next. int8 must agree with fp32 wherever fp32's choice
# of every word was clear by this much.
CLEAR_MARGIN = 0.02
MORE_COLOURS = [
    *COLOURS,
    *[(200, 200, 0), (0, 120, 255), (90, 0, 90), (255, 128, 0), (60, 60, 60)],
    *[(30, 160, 160), (220, 30, 120), (140, 200, 40), (100, 100, 220), (180, 120, 200)],
]


@pytest.fixture(scope="module")
def clear(tiny_models) -> tuple[list, list[str]]:
    """The photos whose fp32 caption had no near tie, and those captions."""
    fp32 = Captioner.from_pretrained(  # on the CPU, as int8 runs, even where there is a GPU
        str(tiny_models.caption), generation=SETTINGS, hardware=CPU_WITH_BF16_AND_VNNI
    )
    images = [load_image(picture((40, 30), colour)) for colour in MORE_COLOURS]
    pixel_values = fp32.preprocess(images)["pixel_values"]
    with torch.inference_mode():
        out = fp32.model.generate(
            pixel_values=pixel_values,
            max_new_tokens=SETTINGS.max_new_tokens,
            output_scores=True,
            return_dict_in_generate=True,
        )
    pad = fp32.model.config.text_config.pad_token_id
    margins = torch.stack([scores.topk(2).values.diff().abs()[:, 0] for scores in out.scores])
    decided = out.sequences[:, 1:] != pad  # steps after a caption's end do not count
    chosen = [i for i in range(len(images)) if (margins[decided[i], i] >= CLEAR_MARGIN).all()]
    captions = fp32.postprocess(out.sequences[chosen])
    # Enough photos for the comparison to mean something, with captions of different lengths
    # (so padding after [SEP] is covered).
    assert len(chosen) >= 4 and len({len(caption.split()) for caption in captions}) > 1
    return [images[i] for i in chosen], captions


@pytest.mark.parametrize("hardware", [CPU_WITH_BF16_AND_VNNI, CPU_WITH_VNNI_ONLY])
def test_int8_captions_decode_in_onnx_runtime_as_fp32_captions_do(tiny_models, clear, hardware):
    int8 = Captioner.from_pretrained(
        str(tiny_models.caption), generation=SETTINGS, precision=INT8, hardware=hardware
    )
    assert isinstance(int8.model.text_decoder, OnnxTextDecoder)
    images, captions = clear
    assert int8(images) == captions


def test_no_torch_copy_of_the_decoder_layers_stays_in_memory(tiny_models):
    int8 = Captioner.from_pretrained(
        str(tiny_models.caption), precision=INT8, hardware=CPU_WITH_BF16_AND_VNNI
    )
    assert not any(isinstance(module, BlipTextLayer) for module in int8.model.modules())


@pytest.mark.parametrize(
    ("hardware", "settings"),
    [
        (CPU_WITH_BF16, GenerationSettings()),  # no VNNI: torch's int8 kernels
        (CPU_WITH_BF16_AND_VNNI, GenerationSettings(num_beams=2)),  # beams: generate()
    ],
)
def test_otherwise_int8_keeps_the_torch_decoder(tiny_models, hardware, settings):
    int8 = Captioner.from_pretrained(
        str(tiny_models.caption), generation=settings, precision=INT8, hardware=hardware
    )
    assert isinstance(int8.model.text_decoder, BlipTextLMHeadModel)
    assert int8(photos(1))[0]


@pytest.mark.parametrize(
    ("hardware", "mode"), [(CPU_WITH_BF16_AND_VNNI, BF16), (CPU_WITH_VNNI_ONLY, FP32)]
)
def test_auto_says_plain_float_where_the_decoder_stays_in_torch(tiny_models, hardware, mode):
    captioner = Captioner.from_pretrained(
        str(tiny_models.caption),
        generation=GenerationSettings(num_beams=2),
        precision=AUTO,
        hardware=hardware,
    )
    assert isinstance(captioner.model.text_decoder, BlipTextLMHeadModel)
    assert captioner.precision == mode


def test_the_onnx_decoder_refuses_beam_search(tiny_models):
    int8 = Captioner.from_pretrained(
        str(tiny_models.caption), precision=INT8, hardware=CPU_WITH_BF16_AND_VNNI
    )
    with pytest.raises(ValueError, match="greedily"):
        Captioner(int8.processor, int8.model, GenerationSettings(num_beams=2))


def test_weights_are_rounded_per_block_within_half_a_step():
    weight = torch.randn(5, 70)  # 70 inputs: two blocks of 32 and a partial one
    quantized, scales = quantize_blocks(weight, 32)
    assert quantized.shape == (5, 3, 32) and quantized.dtype == np.uint8
    assert scales.shape == (15,)
    steps = np.repeat(scales.reshape(5, 3), 32, axis=1)
    restored = (quantized.reshape(5, 96).astype(np.float32) - 128) * steps
    assert np.all(np.abs(restored[:, :70] - weight.numpy()) <= steps[:, :70] / 2 + 1e-7)
    assert np.all(quantized.reshape(5, 96)[:, 70:] == 128)  # the padding is zero


@pytest.mark.parametrize(
    ("hardware", "mode", "dtype"),
    [
        (CPU_WITH_BF16_AND_VNNI, BF16_INT8_DECODER, torch.bfloat16),
        (CPU_WITH_VNNI_ONLY, FP32_INT8_DECODER, torch.float32),
    ],
)
def test_auto_runs_the_decoder_in_int8_and_the_rest_of_the_captioner_in_float(
    tiny_models, clear, hardware, mode, dtype
):
    captioner = Captioner.from_pretrained(
        str(tiny_models.caption), generation=SETTINGS, precision=AUTO, hardware=hardware
    )
    assert captioner.precision == mode
    assert isinstance(captioner.model.text_decoder, OnnxTextDecoder)
    assert {p.dtype for p in captioner.model.parameters() if p.is_floating_point()} == {dtype}
    images, captions = clear
    assert captioner(images) == captions


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_image_keys_and_values_come_out_as_each_layer_computes_them_in_the_graphs_layout(dtype):
    torch.manual_seed(0)
    crosses = [
        SimpleNamespace(key=nn.Linear(24, 32).to(dtype), value=nn.Linear(24, 32).to(dtype))
        for _ in range(3)
    ]
    project = ImageKeysValues(crosses, heads=4)
    for batch in (3, 1, 2):  # the later calls reuse the first one's buffers
        photos = torch.randn(batch, 10, 24, dtype=dtype)
        with torch.inference_mode():
            keys_t, values = project(photos)
            outputs = [(c.key(photos), c.value(photos)) for c in crosses]
        split = [(k.view(batch, 10, 4, 8), v.view(batch, 10, 4, 8)) for k, v in outputs]
        # (layer, batch, head, head size, image) and (layer, batch, head, image, head size)
        expected_keys_t = torch.stack([k.permute(0, 2, 3, 1) for k, _ in split]).float()
        expected_values = torch.stack([v.transpose(1, 2) for _, v in split]).float()
        tolerance = 0.05 if dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(keys_t, expected_keys_t, atol=tolerance, rtol=0)
        torch.testing.assert_close(values, expected_values, atol=tolerance, rtol=0)


# Run in a child process, so that no other thread of the test run is counted: captions with
# the int8 decoder, then the CPU time the whole process used in each of three idle spells.
# torch's own OpenMP threads spin for a few milliseconds after each parallel op (libgomp's
# default): on a 16-core machine they used 0.1 s of each spell, ONNX Runtime's none. So the
# child runs them with OMP_WAIT_POLICY=PASSIVE, and what is left to count is ONNX Runtime's.
IDLE_AFTER_CAPTIONS = """
import sys, time
from core.captioner import Captioner
from core.images import load_image
from core.precision import INT8
from tests.hardware import CPU_WITH_BF16_AND_VNNI
from tests.pictures import picture

captioner = Captioner.from_pretrained(
    sys.argv[1], precision=INT8, hardware=CPU_WITH_BF16_AND_VNNI
)
photos = [load_image(picture((40, 30), (60 * i, 0, 0))) for i in range(4)]
for _ in range(3):
    captioner(photos)
    began = time.process_time()
    time.sleep(0.3)
    print(time.process_time() - began)
"""


def test_the_decoder_threads_stop_spinning_when_a_caption_is_done(tiny_models):
    """Spinning on, they would take the cores from whatever runs next: a reply's three texts
    classified right after a caption took twice as long (`core.accel.onnx_decoder.session`)."""
    child = subprocess.run(
        [sys.executable, "-c", IDLE_AFTER_CAPTIONS, str(tiny_models.caption)],
        env=child_env(OMP_WAIT_POLICY="PASSIVE"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    idle_cpu_seconds = [float(line) for line in child.stdout.split()]
    assert len(idle_cpu_seconds) == 3
    # Spinning on, ONNX Runtime's threads used about 0.022 s of each spell on 2 cores and 0.35 s
    # on 16; stopped, under 0.001 on both.
    assert min(idle_cpu_seconds) < 0.010
