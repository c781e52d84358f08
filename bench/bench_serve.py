"""8 concurrent photo → label requests: here, on Ray Serve with one replica each, and with two.

The same real-size models as `bench.bench_models` (BLIP base and RoBERTa base from their
configs, random weights, captions forced to 20 tokens), in one precision (`auto` by default).
Each round sends 8 requests at once, each the bot's 800×600 photo and a text, and measures each
request's latency from its start to its label, and the round's throughput:

- local: one `Pipeline` in this process, on one thread, the 8 photos captioned in one call and
  the 8 replies' texts classified in one call (what the bot's micro-batching makes of them);
- Ray Serve, one replica each: `core.serve.deploy` on a local Ray, and 8 threads each running
  `Pipeline.analyze` with both `api` backends pointed at it (a caption request, then three
  classification requests), so batches form in the deployments (`@serve.batch`, MAX_BATCH 8,
  BATCH_WINDOW_MS 20);
- Ray Serve, two replicas each, the same way (deployed beside the first, on /2/...).

The three take their rounds in turn, so all meet the same minutes of the machine. Each replica
reserves `--replica-cpus` (default 1) and runs torch on that many threads; Ray is given logical
CPUs for all six replicas. On a 2-core machine two replicas show the mechanism (requests spread
over replicas, batches in each), not a speed-up: the cores are the same. The CPU model, each
deployment's batch sizes (of one replica) and one JSON line are printed.

Run: `python -m bench.bench_serve [--quick]` (about 12 minutes on 2 shared cores; --quick, 2
rounds instead of 4; needs the serve extra).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.bench_models import (
    CAPTION_TOKENS,
    MODELS_DIR,
    OUR_PHOTO,
    TEXTS,
    build_models,
    in_turn,
    jpeg,
    percentiles,
)

CONCURRENT = 8
REPLICAS = 6  # both sizes deployed at once


def settings_for(caption_dir: Path, sentiment_dir: Path, precision: str, **extra: str):
    from core.config import Settings

    env = {
        "CAPTION_MODEL": str(caption_dir),
        "SENTIMENT_MODEL": str(sentiment_dir),
        "CAPTION_MAX_NEW_TOKENS": str(CAPTION_TOKENS),
        "MODEL_PRECISION": precision,
        "MAX_BATCH": str(CONCURRENT),
        **extra,
    }
    return Settings.from_env(env, dotenv_path=None)


def local_round(pipeline, photos: list[bytes], texts: list[str]) -> Callable[[], list[float]]:
    """The 8 requests as the bot's micro-batching runs them: one caption call, one classify."""

    def one_round() -> list[float]:
        began = time.perf_counter()
        captions = pipeline.caption_each(photos)
        pipeline.classify_many([(c, t, "image") for c, t in zip(captions, texts, strict=True)])
        return [time.perf_counter() - began] * len(photos)

    return one_round


def remote_round(root: str, photos: list[bytes], texts: list[str]) -> Callable[[], list[float]]:
    """8 threads, each one photo → label through the `api` backends on `root`/caption and
    `root`/sentiment."""
    from core.config import Settings
    from core.pipeline import Pipeline

    env = {
        "CAPTION_BACKEND": "api",
        "CAPTION_ENDPOINT": f"{root}/caption",
        "SENTIMENT_BACKEND": "api",
        "SENTIMENT_ENDPOINT": f"{root}/sentiment",
        "INFERENCE_TIMEOUT_SECONDS": "600",
    }
    pipeline = Pipeline.from_settings(Settings.from_env(env, dotenv_path=None))
    pool = ThreadPoolExecutor(len(photos))

    def request(photo: bytes, text: str) -> float:
        began = time.perf_counter()
        pipeline.analyze(text, image=photo)
        return time.perf_counter() - began

    def one_round() -> list[float]:
        return list(pool.map(request, photos, texts))

    return one_round


def deploy_both(caption_dir: Path, sentiment_dir: Path, precision: str, cpus: str) -> dict:
    """One replica each through `core.serve.deploy`, on /caption and /sentiment; two each on
    /2/caption and /2/sentiment. Their handles, and the root URL of each."""
    from ray import serve

    from core.serve import CAPTION, SENTIMENT, caption_app, deploy, sentiment_app

    port = free_port()
    sized = {
        replicas: settings_for(
            caption_dir,
            sentiment_dir,
            precision,
            SERVE_PORT=str(port),
            SERVE_CAPTION_REPLICAS=str(replicas),
            SERVE_SENTIMENT_REPLICAS=str(replicas),
            SERVE_REPLICA_CPUS=cpus,
        )
        for replicas in (1, 2)
    }
    handles = {"ray_1": deploy(sized[1])}
    two = {CAPTION: caption_app(sized[2]), SENTIMENT: sentiment_app(sized[2])}
    handles["ray_2"] = {
        name: serve.run(app, name=f"{name}-2", route_prefix=f"/2/{name}")
        for name, app in two.items()
    }
    root = f"http://127.0.0.1:{port}"
    return {"ray_1": (handles["ray_1"], root), "ray_2": (handles["ray_2"], f"{root}/2")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--replica-cpus", default="1")
    args = parser.parse_args()
    runs = 2 if args.quick else 4

    import ray

    from core.pipeline import Pipeline

    caption_dir, sentiment_dir = build_models(MODELS_DIR)
    photos = [jpeg(OUR_PHOTO, seed) for seed in range(CONCURRENT)]
    texts = TEXTS[:CONCURRENT]
    local = Pipeline.from_settings(settings_for(caption_dir, sentiment_dir, args.precision))
    local.warm_up()
    precisions = (local.captioner.precision, local.classifier.precision)

    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    cpus = math.ceil(REPLICAS * float(args.replica_cpus))
    ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=temp_dir)
    try:
        served = deploy_both(caption_dir, sentiment_dir, args.precision, args.replica_cpus)
        rounds = {"local": local_round(local, photos, texts)}
        rounds |= {key: remote_round(root, photos, texts) for key, (_, root) in served.items()}
        latencies: dict[str, list[float]] = {key: [] for key in rounds}

        def measured(key: str) -> Callable[[], None]:
            return lambda: latencies[key].extend(rounds[key]())

        for one_round in rounds.values():
            one_round()  # the first batch shapes' one-time costs are not counted
        walls = in_turn({key: measured(key) for key in rounds}, runs, 1)
        results = {
            key: {**percentiles(latencies[key]), "per_s": CONCURRENT * runs / sum(walls[key])}
            for key in rounds
        }
        for key, (handles, _) in served.items():
            # One replica's sizes (a handle call goes to one of them), for the mechanism.
            results[key]["batch_sizes"] = {
                name: handles[name].batch_sizes.remote().result() for name in handles
            }
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)

    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; precision: caption {precisions[0]}, "
        f"sentiment {precisions[1]}; {CONCURRENT} concurrent photo → label requests, "
        f"{runs} rounds in turn; Ray replicas with {args.replica_cpus} CPU each"
    )
    names = {"local": "local Pipeline", "ray_1": "Ray, 1 replica each", "ray_2": "Ray, 2 each"}
    print(f"{'':24}{'requests/s':>12}{'p50 (s)':>10}{'p95 (s)':>10}  batch sizes (one replica)")
    for key, name in names.items():
        r = results[key]
        sizes = r.get("batch_sizes", {})
        shown = "; ".join(f"{task} {sizes[task]}" for task in sizes)
        print(f"{name:24}{r['per_s']:>12.2f}{r['p50']:>10.2f}{r['p95']:>10.2f}  {shown}")
    print(json.dumps({"bench": "serve", "cpu": cpu_model(), "precisions": precisions, **results}))


if __name__ == "__main__":
    main()
