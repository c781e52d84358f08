import pytest
import torch

from core.accel.caption_decoding import decode_greedily, decodes_plainly
from core.captioner import Captioner
from core.config import GenerationSettings
from core.images import load_image
from core.precision import BF16, FP16, FP32, INT8
from tests.hardware import CPU_WITH_BF16, CPU_WITHOUT_BF16, THIS_GPU, on_gpu
from tests.pictures import picture

COLOURS = [(255, 0, 0), (0, 0, 255), (10, 200, 90), (250, 250, 250), (0, 0, 0), (120, 60, 30)]


def photos(count: int) -> list:
    return [load_image(picture((40, 30), colour)) for colour in COLOURS[:count]]


def generate(captioner: Captioner, images, **settings) -> torch.Tensor:
    """What transformers' own generate() makes of the same photos."""
    pixel_values = captioner.preprocess(images)["pixel_values"]
    pixel_values = pixel_values.to(captioner._device, captioner._pixel_dtype)
    with torch.inference_mode():
        return captioner.model.generate(
            pixel_values=pixel_values,
            max_new_tokens=captioner.generation.max_new_tokens,
            do_sample=False,
            **settings,
        )


def test_greedy_decoding_matches_generate_token_for_token_across_a_batch(tiny_models):
    captioner = Captioner.from_pretrained(
        str(tiny_models.caption), generation=GenerationSettings(max_new_tokens=12)
    )
    images = photos(len(COLOURS))
    pixel_values = captioner.preprocess(images)["pixel_values"].to(captioner._device)
    with torch.inference_mode():
        ours = decode_greedily(captioner.model, pixel_values, max_new_tokens=12)
    expected = generate(captioner, images)
    assert torch.equal(ours, expected)
    # The batch really had captions of different lengths, padded after their [SEP].
    pad = captioner.model.config.text_config.pad_token_id
    padded_rows = (expected == pad).any(dim=1)
    assert padded_rows.any() and not padded_rows.all()


# Rounded modes add in another order than generate() does, so where two words nearly tie,
# ours may pick the other, and the captions part there. Up to that word they must agree, and
# there, by generate()'s own logits, our word may score at most `tie` below its word. On the
# CPU they agreed on all ten words; on a GPU, bf16 parted where fp32's two best words were
# 0.057 apart. The tiny model's best logits are about 1.3; a wrong photo's caption parts
# 0.36 below.
@pytest.mark.parametrize(
    ("mode", "hardware", "tie"),
    [
        (BF16, CPU_WITH_BF16, 0),
        (INT8, CPU_WITH_BF16, 0),
        (INT8, CPU_WITHOUT_BF16, 0),
        on_gpu(FP32, THIS_GPU, 0.01),
        on_gpu(BF16, THIS_GPU, 0.1),
        on_gpu(FP16, THIS_GPU, 0.02),
    ],
)
def test_each_precision_captions_as_generate_does(tiny_models, mode, hardware, tie):
    captioner = Captioner.from_pretrained(
        str(tiny_models.caption),
        generation=GenerationSettings(max_new_tokens=10),
        precision=mode,
        hardware=hardware,
    )
    images = photos(3)
    expected = generate(captioner, images, output_scores=True, return_dict_in_generate=True)
    ours = captioner.forward(captioner.preprocess(images))
    for row, (theirs, mine) in enumerate(zip(expected.sequences, ours, strict=True)):
        pairs = list(zip(theirs[1:].tolist(), mine[1:].tolist(), strict=False))
        parted = next((step for step, (a, b) in enumerate(pairs) if a != b), None)
        if parted is not None:
            scores = expected.scores[parted][row].float()
            their_word, my_word = pairs[parted]
            assert scores[their_word] - scores[my_word] <= tie, (row, parted)


def test_beam_search_still_goes_through_generate(tiny_models):
    captioner = Captioner.from_pretrained(
        str(tiny_models.caption), generation=GenerationSettings(num_beams=3)
    )
    images = photos(2)
    assert captioner(images) == captioner.postprocess(generate(captioner, images, num_beams=3))


def test_a_checkpoint_that_penalises_repeats_is_honoured(tiny_models):
    captioner = Captioner.from_pretrained(str(tiny_models.caption), precision=FP32)
    captioner.model.text_decoder.generation_config.repetition_penalty = 5.0
    captioner = Captioner(captioner.processor, captioner.model, captioner.generation)
    images = photos(2)
    assert captioner(images) == captioner.postprocess(generate(captioner, images))


def test_only_plain_greedy_settings_take_the_lean_loop(tiny_models):
    config = Captioner.from_pretrained(str(tiny_models.caption)).model.generation_config
    assert decodes_plainly(config, num_beams=1)
    assert not decodes_plainly(config, num_beams=2)
    config.no_repeat_ngram_size = 2
    assert not decodes_plainly(config, num_beams=1)
