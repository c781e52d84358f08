import torch
from transformers import BlipForConditionalGeneration

from core.accel.vision_attention import fuse_vision_attention
from core.captioner import Captioner
from core.images import load_image
from tests.pictures import picture


def test_fused_attention_sees_a_photo_as_transformers_does(tiny_models):
    reference = BlipForConditionalGeneration.from_pretrained(str(tiny_models.caption)).eval()
    fused = BlipForConditionalGeneration.from_pretrained(str(tiny_models.caption)).eval()
    layers = len(reference.vision_model.encoder.layers)
    assert fuse_vision_attention(fused) == layers
    captioner = Captioner.from_pretrained(str(tiny_models.caption))
    images = [load_image(picture((40, 30), colour)) for colour in [(255, 0, 0), (0, 90, 200)]]
    pixel_values = captioner.preprocess(images)["pixel_values"]
    with torch.inference_mode():
        expected = reference.vision_model(pixel_values=pixel_values)[0]
        got = fused.vision_model(pixel_values=pixel_values)[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
