"""How long the bot takes to start, and how much memory it holds, with local vs api models.

Each run is a fresh process doing what `python -m bot` does before it talks to Telegram:
import `bot.app`, read the settings, build the pipeline (load both models, or check both
remote ones with one request each). The parent times it from spawn to ready; the child
reports its resident memory then (VmRSS), its peak (VmHWM), and whether torch was imported,
then runs one analysis of a photo and a text and reports its time and memory again (the
weights are memory-mapped, so a local model is only fully resident once it has run).

- local: BLIP base and RoBERTa base at full size (the real configs, about 1.4 GB of fp32
  weights) with random weights, saved with save_pretrained into a temporary folder. Loading
  costs the same whatever the weights' values, and this way the bench needs no download.
- api: both backends `api`, pointed at the fake Inference endpoint of the tests
  (`tests/fake_inference.py`) on 127.0.0.1, so the figures are the bot's own; a real
  endpoint adds one network round trip per model to the start time.

Run: `python -m bench.bench_startup [--runs 3]`. The first local run reads the weights from
disk, and on a CPU with AMX compiles the sentiment model's layers; later ones find the weights
in the page cache and load the compiled layers, as a restarted bot would.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import io, json, sys, time
import bot.app  # everything `python -m bot` imports
from PIL import Image
from bench.bench_models import memory_mib  # its module imports the standard library only
from core.config import Settings
from core.pipeline import Pipeline

def memory():
    mib = memory_mib()
    return mib["VmRSS"], mib["VmHWM"]

pipeline = Pipeline.from_settings(Settings.from_env(dotenv_path=None))
ready = time.time()
rss, peak = memory()
photo = io.BytesIO()
Image.new("RGB", (640, 480), (200, 40, 40)).save(photo, format="JPEG")
began = time.perf_counter()
# Random weights may caption with special tokens only, which analyze() refuses: the two
# stages are called one by one instead, for the same model work.
pipeline.captioner([Image.open(photo).convert("RGB")])
pipeline.classify("a red picture", "what a lovely day")
first_s = time.perf_counter() - began
rss_after, peak_after = memory()
print(json.dumps({
    "ready_at": ready, "rss_mib": rss, "peak_mib": peak,
    "first_analysis_s": first_s, "rss_after_mib": rss_after, "peak_after_mib": peak_after,
    "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
}))
"""


def build_full_size_models(root: Path) -> tuple[Path, Path]:
    """BLIP base and RoBERTa base architectures at their real sizes, random weights."""
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    from tests.tiny_models import build_tiny_blip, build_tiny_roberta

    # The tiny builders write processors and tokenizers; the models are then replaced.
    caption = build_tiny_blip(root / "caption")
    tiny = BlipConfig.from_pretrained(caption).text_config
    ids = ("bos_token_id", "sep_token_id", "eos_token_id", "pad_token_id")
    blip = BlipConfig(text_config={name: getattr(tiny, name) for name in ids})
    with torch.device("cpu"):
        BlipForConditionalGeneration(blip).save_pretrained(caption)

    sentiment = build_tiny_roberta(root / "sentiment")
    tiny = RobertaConfig.from_pretrained(sentiment)
    roberta = RobertaConfig(
        vocab_size=50265,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        bos_token_id=tiny.bos_token_id,
        eos_token_id=tiny.eos_token_id,
        pad_token_id=tiny.pad_token_id,
        id2label=tiny.id2label,
        label2id=tiny.label2id,
    )
    RobertaForSequenceClassification(roberta).save_pretrained(sentiment)
    return caption, sentiment


def start_once(env: dict[str, str]) -> dict:
    spawned = time.time()
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"the child failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["start_s"] = result.pop("ready_at") - spawned
    return result


def measure(name: str, env: dict[str, str], runs: int) -> dict:
    results = [start_once(env) for _ in range(runs)]
    summary = {
        "mode": name,
        "runs": runs,
        "start_s": round(statistics.median(r["start_s"] for r in results), 2),
        "start_s_all": [round(r["start_s"], 2) for r in results],
        "rss_mib": round(statistics.median(r["rss_mib"] for r in results)),
        "peak_mib": round(statistics.median(r["peak_mib"] for r in results)),
        "first_analysis_s": round(statistics.median(r["first_analysis_s"] for r in results), 2),
        "rss_after_first_mib": round(statistics.median(r["rss_after_mib"] for r in results)),
        "peak_after_first_mib": round(statistics.median(r["peak_after_mib"] for r in results)),
        "torch_imported": results[0]["torch"],
        "transformers_imported": results[0]["transformers"],
    }
    print(
        f"{name:>5}: ready in {summary['start_s']:.2f} s (median of {runs}: "
        f"{summary['start_s_all']}), RSS {summary['rss_mib']} MiB, "
        f"peak {summary['peak_mib']} MiB, torch imported: {summary['torch_imported']}; "
        f"first analysis {summary['first_analysis_s']:.2f} s, then RSS "
        f"{summary['rss_after_first_mib']} MiB, peak {summary['peak_after_first_mib']} MiB"
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from tests.fake_inference import TOKEN, FakeInference

    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "TRANSFORMERS_", "CAPTION_", "SENTIMENT_"))
    }
    base.update(PYTHONPATH=str(REPO), TELEGRAM_BOT_TOKEN="1:bench")
    summaries = []
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        caption, sentiment = build_full_size_models(Path(tmp))
        print(f"built full-size random-weight models in {time.perf_counter() - began:.0f} s")
        local = {
            **base,
            "HF_HUB_OFFLINE": "1",
            "CAPTION_MODEL": str(caption),
            "SENTIMENT_MODEL": str(sentiment),
            # The first start compiles the sentiment model's layers on a CPU with AMX
            # (core/sentiment_compiled.py), in `start_s_all`'s first figure; later ones load them.
            "COMPILE_DIR": str(Path(tmp) / "compiled"),
        }
        summaries.append(measure("local", local, args.runs))
    with FakeInference() as endpoint:
        api = {
            **base,
            "HF_TOKEN": TOKEN,
            "CAPTION_BACKEND": "api",
            "CAPTION_ENDPOINT": endpoint.url("caption"),
            "SENTIMENT_BACKEND": "api",
            "SENTIMENT_ENDPOINT": endpoint.url("sentiment"),
        }
        summaries.append(measure("api", api, args.runs))
    print(json.dumps(summaries))


if __name__ == "__main__":
    main()
