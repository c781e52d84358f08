"""Other languages: `SENTIMENT_MODEL=cardiffnlp/twitter-xlm-roberta-base-sentiment` works.

A tiny XLM-RoBERTa with a SentencePiece-style tokenizer stands in for it (same classes, same
label order, capitalised as in its config), loaded from a folder by the very calls that load
the hub id.
"""

from __future__ import annotations

import pytest
import torch
from transformers import XLMRobertaForSequenceClassification

from core import accel
from core.sentiment import SentimentClassifier
from tests.bot_harness import bot_settings, running_bot
from tests.test_bot import seen
from tests.tiny_models import XLM_SENTIMENT_LABELS, TinyModels, build_tiny_xlm_roberta

TEXTS = {
    "ar": "أحب هذا اليوم المشمس",
    "de": "Das Essen war kalt",
    "en": "what a lovely day",
    "es": "¡Qué día tan bonito!",
    "fr": "Le train est en retard",
    "hi": "आज का दिन बहुत बुरा था",
    "it": "Che bella giornata",
    "pt": "Adorei a festa",
}


@pytest.fixture(scope="module")
def xlm_roberta(tmp_path_factory) -> str:
    return str(build_tiny_xlm_roberta(tmp_path_factory.mktemp("xlm") / "sentiment"))


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_texts_in_every_training_language_get_a_label_from_the_config(xlm_roberta, precision):
    classifier = SentimentClassifier.from_pretrained(xlm_roberta, precision=precision)
    assert classifier.runner.config.model_type == "xlm-roberta"
    assert classifier.runner.path != accel.STOCK  # XLM-RoBERTa qualifies for the fast path
    results = classifier(list(TEXTS.values()))
    for result in results:
        assert list(result.scores) == list(XLM_SENTIMENT_LABELS.values())
        assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert result.label == max(result.scores, key=result.scores.__getitem__)


def test_the_classifier_gives_the_stock_models_probabilities(xlm_roberta):
    """Whatever path the classifier takes, fp32 must score as transformers itself does."""
    classifier = SentimentClassifier.from_pretrained(xlm_roberta, precision="fp32")
    texts = list(TEXTS.values())
    inputs = classifier.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        stock = XLMRobertaForSequenceClassification.from_pretrained(xlm_roberta).eval()
        expected = stock(**inputs).logits.softmax(-1)
    for result, probabilities in zip(classifier(texts), expected, strict=True):
        assert list(result.scores.values()) == pytest.approx(probabilities.tolist(), abs=1e-4)


def test_the_winning_class_wins_in_every_language(tmp_path):
    path = build_tiny_xlm_roberta(tmp_path / "negative", winning_label="Negative")
    classifier = SentimentClassifier.from_pretrained(str(path), precision="auto")
    assert {result.label for result in classifier(list(TEXTS.values()))} == {"Negative"}


async def test_the_bot_answers_and_records_with_the_multilingual_model(
    api, ann, tiny_models, tmp_path
):
    path = build_tiny_xlm_roberta(tmp_path / "xlm", winning_label="Positive")
    models = TinyModels(caption=tiny_models.caption, sentiment=path)
    settings = bot_settings(api, models, tmp_path / "records.csv")
    async with running_bot(api, settings) as bot:
        chat = api.private_chat(ann)
        api.send_text(chat, ann, "un perro en la playa")
        api.send_text(chat, ann, TEXTS["es"])
        _, result = await api.wait_for_sent(chat["id"], 2)
        assert seen(result).startswith("😊 Positive · ")
        assert f"💬 {TEXTS['es']}" in seen(result)
        (row,) = bot.rows()
        assert (row["user_text"], row["label"]) == (TEXTS["es"], "Positive")
