import pytest

from core.sentiment import SentimentClassifier, preprocess_tweet
from tests.tiny_models import build_tiny_roberta


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@bob look at this", "@user look at this"),
        ("see https://t.co/x now", "see http now"),
        ("mail me@home.org", "mail me@home.org"),
        ("@ alone", "@ alone"),
        ("hi @ann\n@bob http://a.b", "hi @user\n@user http"),
        ("no change here", "no change here"),
    ],
)
def test_mentions_and_links_become_the_model_cards_placeholders(text, expected):
    assert preprocess_tweet(text) == expected


def test_a_batch_gets_one_result_each_with_all_class_probabilities(tiny_models):
    classifier = SentimentClassifier.from_pretrained(str(tiny_models.sentiment))
    results = classifier(["I love it", "I hate it", "it is a chair"])
    assert len(results) == 3
    for result in results:
        assert set(result.scores) == {"negative", "neutral", "positive"}
        assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert result.score == max(result.scores.values()) == result.scores[result.label]


def test_a_5000_character_text_is_truncated_not_refused(tiny_models):
    classifier = SentimentClassifier.from_pretrained(str(tiny_models.sentiment))
    (result,) = classifier(["so good " * 625])
    assert result.label in {"negative", "neutral", "positive"}
    assert classifier.preprocess(["so good " * 625])["input_ids"].shape[1] == 64


def test_truncation_works_when_the_tokenizer_declares_no_limit(tmp_path):
    # Like the cardiffnlp repository: only the model's position embeddings know the limit.
    path = build_tiny_roberta(tmp_path / "nolimit", model_max_length=None)
    classifier = SentimentClassifier.from_pretrained(str(path))
    assert classifier.max_length == 64
    (result,) = classifier(["x " * 3000])
    assert result.label in {"negative", "neutral", "positive"}


def test_labels_come_from_the_models_own_config(tmp_path):
    permuted = {0: "positive", 1: "negative", 2: "neutral"}
    path = build_tiny_roberta(tmp_path / "permuted", id2label=permuted, winning_label="neutral")
    classifier = SentimentClassifier.from_pretrained(str(path))
    (result,) = classifier(["whatever I say"])
    assert result.label == "neutral" and result.score > 0.99
    assert list(result.scores) == ["positive", "negative", "neutral"]


def test_preprocessing_is_applied_before_the_model_sees_the_text(tiny_models):
    classifier = SentimentClassifier.from_pretrained(str(tiny_models.sentiment))
    assert classifier([" @ann hi"])[0].scores == classifier([" @user hi"])[0].scores
