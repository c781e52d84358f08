import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)

from core.precision import BF16, FP32, INT8
from core.sentiment import SentimentClassifier
from core.sentiment_encoding import encodes_plainly
from tests.hardware import CPU_WITH_BF16, CPU_WITHOUT_BF16

# Different lengths, so the batch is padded; a mention, a link, emoji.
TEXTS = [
    "a dog on the beach. best day ever!!",
    "meh",
    "@someone look at this http://example.com 😀 it is not what I expected at all, sadly",
]


def transformers_logits(classifier: SentimentClassifier) -> torch.Tensor:
    inputs = classifier.preprocess(TEXTS)
    with torch.inference_mode():
        return classifier.model(**inputs).logits


# bf16: the two passes round in different places; 0.022 was the largest difference seen.
@pytest.mark.parametrize(
    ("mode", "hardware", "tolerance"),
    [(FP32, CPU_WITH_BF16, 1e-5), (BF16, CPU_WITH_BF16, 0.03), (INT8, CPU_WITHOUT_BF16, 1e-5)],
)
def test_the_lean_pass_gives_transformers_logits(tiny_models, mode, hardware, tolerance):
    classifier = SentimentClassifier.from_pretrained(
        str(tiny_models.sentiment), precision=mode, hardware=hardware
    )
    assert classifier._lean
    ours = classifier.forward(classifier.preprocess(TEXTS))
    torch.testing.assert_close(ours, transformers_logits(classifier), atol=tolerance, rtol=0)


def test_other_architectures_go_through_transformers():
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    assert not encodes_plainly(BertForSequenceClassification(config))


def test_the_real_sentiment_architecture_qualifies(tiny_models):
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_models.sentiment))
    assert encodes_plainly(model)
