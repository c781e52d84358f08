"""Tiny, randomly initialised copies of the two models the bot uses, saved like hub models.

Each builder makes the real architecture at toy size (seeded, so every build is the same),
a processor or tokenizer made on the spot from a few words, and writes both with
`save_pretrained` into a folder. Production code then loads that folder with the very calls
it uses for the hub ids `Salesforce/blip-image-captioning-base` and
`cardiffnlp/twitter-roberta-base-sentiment-latest` (and, for other languages,
`cardiffnlp/twitter-xlm-roberta-base-sentiment`), without any network.

The weights are random: captions are strings of real (lowercase) words in no sensible order,
and sentiment scores are arbitrary unless a `winning_label` is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
from transformers import (
    BertTokenizerFast,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessorPil,
    BlipProcessor,
    PreTrainedTokenizerBase,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaTokenizer,
)

# Side, in pixels, of the square image the tiny BLIP sees (the real one: 384).
BLIP_IMAGE_SIZE = 32
# Longest input, in tokens, of the tiny RoBERTa, <s> and </s> included (the real one: 512).
ROBERTA_MAX_LENGTH = 64
# The cardiffnlp model's classes, in its order.
SENTIMENT_LABELS = {0: "negative", 1: "neutral", 2: "positive"}
# The multilingual model's: the same order, capitalised.
XLM_SENTIMENT_LABELS = {0: "Negative", 1: "Neutral", 2: "Positive"}

# A logit bias this large decides the argmax whatever the random weights say.
_DECISIVE = 30.0

_CAPTION_WORDS = """
    a an the of on in at with and by near under over next to its their
    man woman boy girl child people person dog cat bird horse cow sheep
    car bus train bike boat plane street road city building house room
    kitchen table chair bed couch window door wall tree grass field beach
    water sky snow sun flower food pizza cake plate cup phone picture photo
    red blue green white black yellow brown small large old young happy
    sitting standing walking running eating holding playing looking riding
"""

_SENTIMENT_CORPUS = """
I love this sunny day at the beach with my friends, it is wonderful!
This is the worst service I have ever had. Totally awful and rude.
The meeting is at three o'clock in the office on the second floor.
What a great photo of a dog sitting on the grass, so happy and cute.
I hate waiting in the cold rain for a bus that never comes.
The cat is sleeping on the table next to the open window.
Thank you so much for the amazing birthday cake, best party ever!
My phone broke again and the shop will not fix it. So annoying.
A man riding a bike down a city street near some old buildings.
Not sure what to think about the new train schedule, we will see.
Dinner was fine, nothing special, the pizza was a bit cold.
Beautiful flowers in the park today, the sky is blue and bright.
@user check this out http it is really good news for everyone
I am so sad and tired, nothing is going right this week.
Two people standing in a kitchen holding cups of coffee.
""".strip().splitlines()


# A few sentences in each language of the XLM-T sentiment model: Arabic, English, French,
# German, Hindi, Italian, Portuguese, Spanish.
_MULTILINGUAL_CORPUS = [
    *_SENTIMENT_CORPUS[:5],
    "أحب هذا اليوم المشمس على الشاطئ",
    "هذه أسوأ خدمة رأيتها في حياتي",
    "J'adore cette photo, quelle belle journée au soleil !",
    "Le train est encore en retard, c'est vraiment nul.",
    "Ich liebe diesen Hund, er ist so süß und glücklich.",
    "Das Essen war kalt und der Service schrecklich.",
    "मुझे यह तस्वीर बहुत पसंद है, कितना सुंदर दिन है",
    "आज का दिन बहुत बुरा था, सब कुछ गलत हो गया",
    "Che bella giornata al mare con gli amici!",
    "Odio aspettare l'autobus sotto la pioggia.",
    "Que dia lindo, adorei a festa de aniversário!",
    "O serviço foi péssimo e a comida estava fria.",
    "¡Me encanta esta foto del perro en la playa!",
    "Qué día tan horrible, todo salió mal.",
]


@dataclass(frozen=True)
class TinyModels:
    """Folders written by `build_tiny_blip` and `build_tiny_roberta`."""

    caption: Path
    sentiment: Path


def build_tiny_blip(path: Path, *, seed: int = 0, empty_captions: bool = False) -> Path:
    """Write a tiny `BlipForConditionalGeneration` and its `BlipProcessor` into `path`.

    Captions are 1 to `max_new_tokens` words from a small English vocabulary; the model never
    emits a special token other than [SEP], which ends a caption. With `empty_captions`, [SEP]
    always comes first, so every caption decodes to "".
    """
    path.mkdir(parents=True, exist_ok=True)
    processor = BlipProcessor(
        image_processor=BlipImageProcessorPil(
            size={"height": BLIP_IMAGE_SIZE, "width": BLIP_IMAGE_SIZE}
        ),
        tokenizer=_bert_tokenizer(path / "vocab.txt"),
    )
    tokenizer = processor.tokenizer
    config = BlipConfig(
        vision_config={
            "image_size": BLIP_IMAGE_SIZE,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "projection_dim": 32,
            # The default (1e-10) makes every image look alike to the decoder.
            "initializer_range": 0.02,
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "projection_dim": 32,
            "max_position_embeddings": tokenizer.model_max_length,
            # Large enough that different images get different captions.
            "initializer_range": 0.1,
            # As in the real config: generation starts at [DEC] and stops at [SEP].
            "bos_token_id": tokenizer.bos_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        projection_dim=32,
        image_text_hidden_size=32,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        # The output bias is tied to the decoder's, so this is what generate() sees.
        bias = model.text_decoder.cls.predictions.bias
        for token_id in tokenizer.all_special_ids:
            if token_id != tokenizer.sep_token_id:
                bias[token_id] = -_DECISIVE
        if empty_captions:
            bias[tokenizer.sep_token_id] = _DECISIVE
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_roberta(
    path: Path,
    *,
    seed: int = 0,
    id2label: Mapping[int, str] | None = None,
    winning_label: str | None = None,
    model_max_length: int | None = ROBERTA_MAX_LENGTH,
) -> Path:
    """Write a tiny `RobertaForSequenceClassification` and its byte-level BPE tokenizer into `path`.

    `id2label` defaults to the cardiffnlp order; pass a permutation to check that labels are
    read from the config. `winning_label` makes that label the top class for every text.
    `model_max_length=None` saves the tokenizer without a length limit, as the cardiffnlp
    repository does, so only the model's `max_position_embeddings` tells the limit.
    """
    tokenizer = roberta_tokenizer(_SENTIMENT_CORPUS, 400, model_max_length)
    return _save_classifier(
        path, RobertaConfig, RobertaForSequenceClassification, tokenizer, seed, id2label,
        winning_label,
    )  # fmt: skip


def build_tiny_xlm_roberta(path: Path, *, seed: int = 0, winning_label: str | None = None) -> Path:
    """Write a tiny `XLMRobertaForSequenceClassification` and its SentencePiece-style Unigram
    tokenizer, trained on a few sentences in the eight languages of
    `cardiffnlp/twitter-xlm-roberta-base-sentiment`, into `path`."""
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(
        _MULTILINGUAL_CORPUS,
        vocab_size=600,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],  # XLM-R's first four ids
        unk_token="<unk>",
        show_progress=False,
    )
    pieces = [tuple(piece) for piece in json.loads(unigram.to_str())["model"]["vocab"]]
    tokenizer = XLMRobertaTokenizer(
        vocab=[*pieces, ("<mask>", 0.0)],  # last, as in xlm-roberta-base
        model_max_length=ROBERTA_MAX_LENGTH,
    )
    return _save_classifier(
        path, XLMRobertaConfig, XLMRobertaForSequenceClassification, tokenizer, seed,
        XLM_SENTIMENT_LABELS, winning_label,
    )  # fmt: skip


def _save_classifier(
    path: Path,
    config_class: type[RobertaConfig] | type[XLMRobertaConfig],
    model_class: type[RobertaForSequenceClassification] | type[XLMRobertaForSequenceClassification],
    tokenizer: PreTrainedTokenizerBase,
    seed: int,
    id2label: Mapping[int, str] | None,
    winning_label: str | None,
) -> Path:
    """A RoBERTa-shaped classifier at toy size for `tokenizer`, saved with it into `path`."""
    path.mkdir(parents=True, exist_ok=True)
    id2label = dict(SENTIMENT_LABELS if id2label is None else id2label)
    label2id = {label: index for index, label in id2label.items()}
    if winning_label is not None and winning_label not in label2id:
        raise ValueError(f"winning_label {winning_label!r} is not one of {sorted(label2id)}")
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        # Positions start after padding_idx (1), hence the real model's 514 for 512 tokens.
        max_position_embeddings=ROBERTA_MAX_LENGTH + 2,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        # Large enough that different texts get visibly different scores.
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(id2label),
        id2label=id2label,
        label2id=label2id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config).eval()
    if winning_label is not None:
        with torch.no_grad():
            model.classifier.out_proj.bias[label2id[winning_label]] += _DECISIVE
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _bert_tokenizer(vocab_file: Path) -> BertTokenizerFast:
    """The BLIP tokenizer: uncased WordPiece plus [DEC] (bos) and [ENC], appended like BLIP's."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(_CAPTION_WORDS.split())]
    vocab_file.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    # The real tokenizer's limit equals its text decoder's max_position_embeddings (512).
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), model_max_length=128)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    return tokenizer


def roberta_tokenizer(
    corpus: Iterable[str], vocab_size: int, model_max_length: int | None = None
) -> RobertaTokenizerFast:
    """Byte-level BPE trained on `corpus`, special tokens placed as in RoBERTa's vocab.

    The benchmark's full-size RoBERTa uses it too (`bench.bench_models`).
    """
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus,
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        show_progress=False,
    )
    trained = json.loads(bpe.to_str())["model"]
    vocab = dict(trained["vocab"])
    vocab["<mask>"] = len(vocab)  # last, as in roberta-base
    merges = [tuple(merge) for merge in trained["merges"]]
    limit = {} if model_max_length is None else {"model_max_length": model_max_length}
    return RobertaTokenizerFast(vocab=vocab, merges=merges, **limit)
