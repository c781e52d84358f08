import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    RobertaForSequenceClassification,
)

from core.accel.sentiment_encoding import encodes_plainly
from core.precision import BF16, FP16, FP32, INT8, LOAD_DTYPES, apply
from core.sentiment import SentimentClassifier
from tests.hardware import CPU_WITH_BF16, CPU_WITHOUT_BF16, THIS_GPU, on_gpu

# Different lengths, so the batch is padded; a mention, a link, emoji.
TEXTS = [
    "a dog on the beach. best day ever!!",
    "meh",
    "@someone look at this http://example.com 😀 it is not what I expected at all, sadly",
]
# Two sequences of 39 + 4 and 27 tokens: alone, the short texts fill part of a 16-row tile.
SPILLING = [
    "sunflowers in a field. life is hard and nothing works this week at all",
    "sunflowers in a field with a blue sky",
    "ok",
]


def transformers_model(path: str, mode: str, hardware) -> RobertaForSequenceClassification:
    """The model as transformers runs it, in `mode`: its query, key and value not fused."""
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=LOAD_DTYPES[mode])
    return apply(model.eval().to(hardware.device), mode, hardware=hardware)


# bf16 and int8's bf16 activations: the two passes round in different places; 0.022 was the
# largest difference seen.
# int8 here is dynamic int8, which rounds the activations of each call with one scale, so a
# text's logits depend on which rows share the call: transformers' own pass moves them by 0.047
# between a text alone and in this batch, and the packed pass has other rows (0.08 seen).
# On a GPU the two passes run other kernels (fused attention, the products' algorithms);
# these tolerances were set there, not seen, and held on an H200.
@pytest.mark.parametrize(
    ("mode", "hardware", "tolerance"),
    [
        (FP32, CPU_WITH_BF16, 1e-5),
        (BF16, CPU_WITH_BF16, 0.03),
        (INT8, CPU_WITH_BF16, 0.03),
        (INT8, CPU_WITHOUT_BF16, 0.15),
        on_gpu(FP32, THIS_GPU, 1e-3),
        on_gpu(BF16, THIS_GPU, 0.03),
        on_gpu(FP16, THIS_GPU, 0.01),
    ],
)
def test_the_lean_pass_gives_transformers_logits(tiny_models, mode, hardware, tolerance):
    path = str(tiny_models.sentiment)
    classifier = SentimentClassifier.from_pretrained(path, precision=mode, hardware=hardware)
    assert classifier._lean is not None
    inputs = classifier.preprocess(TEXTS).to(hardware.device)
    with torch.inference_mode():
        reference = transformers_model(path, mode, hardware)(**inputs).logits
    torch.testing.assert_close(classifier.forward(inputs), reference, atol=tolerance, rtol=0)


@pytest.mark.parametrize(
    ("mode", "hardware"),
    [(FP32, CPU_WITH_BF16), (BF16, CPU_WITH_BF16), on_gpu(BF16, THIS_GPU), on_gpu(FP16, THIS_GPU)],
)
@pytest.mark.parametrize("texts", [TEXTS, SPILLING])
def test_a_texts_logits_do_not_depend_on_the_texts_it_is_packed_with(
    tiny_models, mode, hardware, texts
):
    path = str(tiny_models.sentiment)
    classifier = SentimentClassifier.from_pretrained(path, precision=mode, hardware=hardware)
    together = classifier.forward(classifier.preprocess(texts))
    alone = torch.cat([classifier.forward(classifier.preprocess([text])) for text in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_query_key_and_value_are_one_product_and_an_unfused_model_gives_the_same(tiny_models):
    path = str(tiny_models.sentiment)
    fused = SentimentClassifier.from_pretrained(path, precision=BF16, hardware=CPU_WITH_BF16)
    attention = fused.model.roberta.encoder.layer[0].attention.self
    assert attention.qkv.out_features == 3 * attention.qkv.in_features
    assert not hasattr(attention, "query")
    unfused = SentimentClassifier(fused.tokenizer, transformers_model(path, BF16, CPU_WITH_BF16))
    assert unfused._lean is not None
    inputs = fused.preprocess(TEXTS)
    torch.testing.assert_close(fused.forward(inputs), unfused.forward(inputs), atol=0.03, rtol=0)


def test_fp32_keeps_the_checkpoints_own_query_key_and_value(tiny_models):
    classifier = SentimentClassifier.from_pretrained(str(tiny_models.sentiment))
    attention = classifier.model.roberta.encoder.layer[0].attention.self
    assert not hasattr(attention, "qkv") and classifier._lean is not None


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
