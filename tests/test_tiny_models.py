"""The tiny models load and run through the same calls production makes for hub models."""

import huggingface_hub
import torch
from PIL import Image
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BlipForConditionalGeneration,
    BlipProcessor,
)

from tests.tiny_models import (
    BLIP_IMAGE_SIZE,
    ROBERTA_MAX_LENGTH,
    SENTIMENT_LABELS,
    build_tiny_blip,
    build_tiny_roberta,
)

PHOTOS = [
    Image.new("RGB", (64, 48), (200, 30, 30)),
    Image.new("RGB", (640, 480), (20, 200, 90)),
    Image.new("L", (10, 10), 128),
]


def caption(folder, images, **generate_kwargs):
    processor = BlipProcessor.from_pretrained(folder)
    model = BlipForConditionalGeneration.from_pretrained(folder)
    inputs = processor(images=images, return_tensors="pt")
    with torch.inference_mode():
        ids = model.generate(**inputs, max_new_tokens=5, **generate_kwargs)
    return processor.batch_decode(ids, skip_special_tokens=True)


def classify(folder, texts):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    inputs = tokenizer(texts, truncation=True, padding=True, return_tensors="pt")
    with torch.inference_mode():
        probabilities = model(**inputs).logits.softmax(dim=-1)
    return model.config.id2label, probabilities


def test_the_hub_is_offline_for_the_whole_session():
    assert huggingface_hub.constants.HF_HUB_OFFLINE


def test_captions_are_words_from_the_tiny_vocabulary(tiny_models):
    processor = BlipProcessor.from_pretrained(tiny_models.caption)
    vocabulary = processor.tokenizer.get_vocab()

    captions = caption(tiny_models.caption, PHOTOS)

    assert len(captions) == len(PHOTOS)
    for text in captions:
        words = text.split()
        assert 1 <= len(words) <= 5
        assert all(word in vocabulary for word in words)


def test_captions_are_the_same_on_every_run(tiny_models, tmp_path):
    rebuilt = build_tiny_blip(tmp_path / "caption")
    assert caption(rebuilt, PHOTOS) == caption(tiny_models.caption, PHOTOS)


def test_beam_search_captions_work_too(tiny_models):
    assert all(caption(tiny_models.caption, PHOTOS, num_beams=3, do_sample=False))


def test_the_caption_model_sees_small_square_images(tiny_models):
    processor = BlipProcessor.from_pretrained(tiny_models.caption)
    pixels = processor(images=PHOTOS, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (len(PHOTOS), 3, BLIP_IMAGE_SIZE, BLIP_IMAGE_SIZE)


def test_a_model_built_for_empty_captions_gives_only_empty_strings(tmp_path):
    folder = build_tiny_blip(tmp_path / "caption", empty_captions=True)
    assert caption(folder, PHOTOS) == ["", "", ""]


def test_classification_gives_probabilities_over_the_three_labels(tiny_models):
    id2label, probabilities = classify(
        tiny_models.sentiment, ["a dog on the grass. I love it", "a red car. I hate this"]
    )

    assert id2label == SENTIMENT_LABELS
    assert probabilities.shape == (2, 3)
    assert torch.allclose(probabilities.sum(dim=-1), torch.ones(2))


def test_a_long_text_is_truncated_to_what_the_model_accepts(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.sentiment)
    assert tokenizer.model_max_length == ROBERTA_MAX_LENGTH

    long_text = "What a lovely day at the beach! " * 160
    assert len(long_text) >= 5000
    encoded = tokenizer([long_text], truncation=True, padding=True, return_tensors="pt")
    assert encoded["input_ids"].shape == (1, ROBERTA_MAX_LENGTH)

    _, probabilities = classify(tiny_models.sentiment, [long_text, "ok"])
    assert probabilities.shape == (2, 3)


def test_labels_come_from_the_config_as_built(tmp_path):
    permuted = {0: "positive", 1: "negative", 2: "neutral"}
    folder = build_tiny_roberta(tmp_path / "sentiment", id2label=permuted)

    model = AutoModelForSequenceClassification.from_pretrained(folder)

    assert model.config.id2label == permuted
    assert model.config.label2id == {"positive": 0, "negative": 1, "neutral": 2}


def test_a_winning_label_wins_for_every_text(tmp_path):
    permuted = {0: "positive", 1: "negative", 2: "neutral"}
    folder = build_tiny_roberta(tmp_path / "sentiment", id2label=permuted, winning_label="neutral")

    id2label, probabilities = classify(folder, ["I love it", "I hate it", "x" * 5000])

    assert [id2label[index] for index in probabilities.argmax(dim=-1).tolist()] == ["neutral"] * 3
    assert (probabilities.max(dim=-1).values > 0.99).all()


def test_a_tokenizer_without_a_limit_needs_the_model_to_tell_it(tmp_path):
    folder = build_tiny_roberta(tmp_path / "sentiment", model_max_length=None)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)

    assert tokenizer.model_max_length > 10**9
    assert model.config.max_position_embeddings - 2 == ROBERTA_MAX_LENGTH
    encoded = tokenizer(["word " * 2000], truncation=True, return_tensors="pt")
    assert encoded["input_ids"].shape[1] > ROBERTA_MAX_LENGTH
