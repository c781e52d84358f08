from core.captioner import Captioner
from core.config import GenerationSettings
from core.images import load_image
from tests.pictures import picture
from tests.tiny_models import BLIP_IMAGE_SIZE


def test_a_batch_of_photos_gets_one_caption_each_in_order(tiny_models):
    captioner = Captioner.from_pretrained(str(tiny_models.caption))
    images = [load_image(picture((40, 30), colour)) for colour in [(255, 0, 0), (0, 0, 255)]]
    batch = captioner(images)
    assert len(batch) == 2 and all(isinstance(caption, str) and caption for caption in batch)
    assert batch == [captioner([image])[0] for image in images]


def test_captions_are_deterministic(tiny_models):
    captioner = Captioner.from_pretrained(str(tiny_models.caption))
    image = load_image(picture((50, 50), (10, 200, 90)))
    assert captioner([image]) == captioner([image])


def test_generation_settings_are_honoured(tiny_models):
    short = Captioner.from_pretrained(
        str(tiny_models.caption), generation=GenerationSettings(max_new_tokens=2)
    )
    long = Captioner.from_pretrained(
        str(tiny_models.caption), generation=GenerationSettings(max_new_tokens=25)
    )
    image = load_image(picture((50, 50), (10, 200, 90)))
    assert len(short([image])[0].split()) <= 2 < len(long([image])[0].split())


def test_the_input_size_comes_from_the_processor(tiny_models):
    assert Captioner.from_pretrained(str(tiny_models.caption)).input_size == BLIP_IMAGE_SIZE


def test_no_photos_means_no_model_call(tiny_models):
    assert Captioner.from_pretrained(str(tiny_models.caption))([]) == []
