"""Micro-batching across chats: 8 concurrent requests through `bot.inference.Inference`.

The same real-size models as `bench.bench_models` (BLIP base and RoBERTa base from their
configs, random weights, captions forced to 20 tokens), in one precision (`auto` by default:
what the bot runs), loaded and warmed up on the inference thread as `Inference.start` does.
Each round sends 8 caption requests at once (the bot's 800×600 photo), then 8 classification
requests at once, through `Inference` with `BATCH_WINDOW_MS=0` (one model call per request)
and with the window on (one batch, `MAX_BATCH=8`), and measures each request's latency from
the call to its answer and the round's throughput; and one photo alone, which waits out the
window for company that never comes. Printed side by side, then one JSON line.

Run: `python -m bench.bench_batching [--quick]` (about 2 minutes on 2 cores; --quick about 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench.bench_models import (
    CAPTION_TOKENS,
    CAPTIONS,
    MODELS_DIR,
    OUR_PHOTO,
    TEXTS,
    build_models,
    jpeg,
    percentiles,
)
from bot.inference import Inference, _inference_thread

CONCURRENT = 8


def load(precision: str):
    from core.captioner import Captioner
    from core.config import GenerationSettings
    from core.pipeline import Pipeline
    from core.sentiment import SentimentClassifier

    caption_dir, sentiment_dir = build_models(MODELS_DIR)
    captioner = Captioner.from_pretrained(
        str(caption_dir),
        generation=GenerationSettings(max_new_tokens=CAPTION_TOKENS),
        precision=precision,
    )
    classifier = SentimentClassifier.from_pretrained(str(sentiment_dir), precision=precision)
    pipeline = Pipeline(captioner, classifier)
    pipeline.warm_up()
    return pipeline


async def rounds(inference: Inference, photos: list[bytes], runs: int) -> dict:
    async def timed(call) -> float:
        began = time.perf_counter()
        await call
        return time.perf_counter() - began

    async def one_round(calls) -> tuple[list[float], float]:
        began = time.perf_counter()
        latencies = await asyncio.gather(*(timed(call) for call in calls()))
        return list(latencies), time.perf_counter() - began

    def captions():
        return [inference.caption(photo) for photo in photos]

    def analyses():
        pairs = zip(CAPTIONS, TEXTS, strict=False)
        return [inference.classify(c, t, "image") for c, t in list(pairs)[:CONCURRENT]]

    result = {}
    lone = [await timed(inference.caption(photos[0])) for _ in range(runs + 1)][1:]
    result["caption_alone"] = percentiles(lone)
    for name, calls in (("caption", captions), ("classify", analyses)):
        await one_round(calls)  # this batch shape's one-time costs are not counted
        latencies, walls = [], []
        for _ in range(runs):
            seconds, wall = await one_round(calls)
            latencies += seconds
            walls.append(wall)
        result[name] = {
            **percentiles(latencies),
            "per_s": CONCURRENT * runs / sum(walls),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 1 minute)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--window-ms", type=float, default=20.0)
    args = parser.parse_args()
    runs = 2 if args.quick else 4

    worker = _inference_thread()
    pipeline = worker.submit(load, args.precision).result()
    photos = [jpeg(OUR_PHOTO, seed) for seed in range(CONCURRENT)]
    results = {}
    for window in (0.0, args.window_ms):
        inference = Inference(pipeline, 64, worker, batch_window_ms=window, max_batch=CONCURRENT)
        results[window] = asyncio.run(rounds(inference, photos, runs))
    worker.shutdown()

    off, on = results[0.0], results[args.window_ms]
    print(
        f"precision: caption {pipeline.captioner.precision}, "
        f"sentiment {pipeline.classifier.precision}; {CONCURRENT} concurrent requests, "
        f"{runs} rounds"
    )
    header = f"{'':28}{'window 0 ms':>14}{f'window {args.window_ms:g} ms':>16}{'ratio':>8}"
    print(header)
    for task in ("caption", "classify"):
        rows = [("per_s", f"{task} requests/s", 1), ("p50", f"{task} p50 (s)", 1)]
        rows.append(("p95", f"{task} p95 (s)", 1))
        for key, label, _ in rows:
            a, b = off[task][key], on[task][key]
            print(f"{label:28}{a:>14.3f}{b:>16.3f}{b / a:>8.2f}")
    a, b = off["caption_alone"]["p50"], on["caption_alone"]["p50"]
    print(f"{'caption alone p50 (s)':28}{a:>14.3f}{b:>16.3f}{b / a:>8.2f}")
    print(
        json.dumps(
            {
                "bench": "batching",
                "caption_precision": pipeline.captioner.precision,
                "sentiment_precision": pipeline.classifier.precision,
                "concurrent": CONCURRENT,
                "rounds": runs,
                "window_0": off,
                f"window_{args.window_ms:g}": on,
            }
        )
    )


if __name__ == "__main__":
    main()
