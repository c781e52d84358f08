import numpy as np
import pytest
import torch
from transformers.models.blip.modeling_blip_text import BlipTextLayer, BlipTextLMHeadModel

from core.captioner import Captioner
from core.config import GenerationSettings
from core.onnx_decoder import OnnxTextDecoder, quantize_blocks
from core.precision import AUTO, BF16, BF16_INT8_DECODER, INT8
from tests.hardware import CPU_WITH_BF16, CPU_WITH_BF16_AND_VNNI, CPU_WITH_VNNI_ONLY
from tests.test_caption_decoding import COLOURS, photos

SETTINGS = GenerationSettings(max_new_tokens=12)


@pytest.fixture(scope="module")
def fp32(tiny_models) -> Captioner:
    return Captioner.from_pretrained(str(tiny_models.caption), generation=SETTINGS)


@pytest.mark.parametrize("hardware", [CPU_WITH_BF16_AND_VNNI, CPU_WITH_VNNI_ONLY])
def test_int8_captions_decode_in_onnx_runtime_as_fp32_captions_do(tiny_models, fp32, hardware):
    int8 = Captioner.from_pretrained(
        str(tiny_models.caption), generation=SETTINGS, precision=INT8, hardware=hardware
    )
    assert isinstance(int8.model.text_decoder, OnnxTextDecoder)
    images = photos(len(COLOURS))  # captions of different lengths: padding after [SEP] too
    assert int8(images) == fp32(images)
    assert len({len(caption.split()) for caption in fp32(images)}) > 1


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


def test_auto_says_plain_bf16_where_the_decoder_stays_in_torch(tiny_models):
    captioner = Captioner.from_pretrained(
        str(tiny_models.caption),
        generation=GenerationSettings(num_beams=2),
        precision=AUTO,
        hardware=CPU_WITH_BF16_AND_VNNI,
    )
    assert isinstance(captioner.model.text_decoder, BlipTextLMHeadModel)
    assert captioner.precision == BF16


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


def test_auto_runs_the_decoder_in_int8_and_the_rest_of_the_captioner_in_bf16(tiny_models):
    # bf16 rounds the photo's features, so after many words a near tie may tip the other way;
    # the first eight must agree with fp32.
    settings = GenerationSettings(max_new_tokens=8)
    fp32 = Captioner.from_pretrained(str(tiny_models.caption), generation=settings)
    captioner = Captioner.from_pretrained(
        str(tiny_models.caption),
        generation=settings,
        precision=AUTO,
        hardware=CPU_WITH_BF16_AND_VNNI,
    )
    assert captioner.precision == BF16_INT8_DECODER
    assert isinstance(captioner.model.text_decoder, OnnxTextDecoder)
    assert {p.dtype for p in captioner.model.parameters() if p.is_floating_point()} == {
        torch.bfloat16
    }
    images = photos(len(COLOURS))
    assert captioner(images) == fp32(images)
