"""How fast `RecordStore.recent()` answers on a big records file.

Writes a file of N rows spread over many chats straight with the csv module (about
one row in ten has a comma, quotes or a newline, so the index must track quotes),
then times the first `recent()` call, which builds the index, and 200 more on
random chats. Run: `python -m bench.bench_records [--rows N] [--chats N]`.
"""

import argparse
import csv
import json
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.records import COLUMNS, RecordStore

TARGET_S = 0.050
CALLS = 200
TEXTS = (
    "I am in love and life is good",
    "I feel bad and i think life is hard",
    "so happy today",
    "what a day",
    "meh",
    "not sure how I feel about this one",
    "great, just great",
    'she said "never again"',
    "first line\nsecond line",
    "emoji time 😀🎉",
)
CAPTIONS = (
    "a field of flowers with mountains in the background",
    "a car crashed into a pole on the side of the road",
    "sunflowers in a field",
    "a dog running on a beach",
)


def generate_rows(
    rows: int, chat_ids: list[int], rng: random.Random
) -> Iterator[tuple[object, ...]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(rows):
        caption = CAPTIONS[i % len(CAPTIONS)]
        text = TEXTS[i % len(TEXTS)]
        yield (
            caption,
            text,
            f"{caption}. {text}",
            "positive" if i % 3 else "negative",
            repr(rng.random()),
            (start + timedelta(seconds=i)).isoformat(timespec="microseconds"),
            rng.choice(chat_ids),
            rng.randrange(10**9),
            "image" if i % 4 else "manual",
        )


def write_file(path: Path, rows: int, chat_ids: list[int], rng: random.Random) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(generate_rows(rows, chat_ids, rng))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chats", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    chat_ids = [rng.randrange(-(10**12), 10**12) for _ in range(args.chats)]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.csv"
        began = time.perf_counter()
        write_file(path, args.rows, chat_ids, rng)
        write_s = time.perf_counter() - began
        size_mb = path.stat().st_size / 1e6
        print(
            f"wrote {args.rows:,} rows over {args.chats:,} chats ({size_mb:.0f} MB)"
            f" in {write_s:.2f} s"
        )

        store = RecordStore(path)
        began = time.perf_counter()
        store.recent(chat_ids[0])
        first_s = time.perf_counter() - began
        print(f"first recent() (builds the index): {first_s * 1000:.0f} ms")

        times = []
        returned = 0
        for chat_id in rng.choices(chat_ids, k=CALLS):
            began = time.perf_counter()
            returned += len(store.recent(chat_id))
            times.append(time.perf_counter() - began)
        median_s = statistics.median(times)
        p95_s = statistics.quantiles(times, n=20)[18]
        met = p95_s < TARGET_S
        print(
            f"{CALLS} recent() calls on random chats: median {median_s * 1000:.3f} ms, "
            f"p95 {p95_s * 1000:.3f} ms ({returned} records returned)"
        )
        print(f"target p95 < {TARGET_S * 1000:.0f} ms: {'met' if met else 'NOT met'}")

    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "rows": args.rows,
                "chats": args.chats,
                "file_mb": round(size_mb, 1),
                "write_s": round(write_s, 3),
                "first_recent_ms": round(first_s * 1000, 1),
                "median_ms": round(median_s * 1000, 3),
                "p95_ms": round(p95_s * 1000, 3),
                "target_ms": TARGET_S * 1000,
                "target_met": met,
                "max_rss_mb": round(max_rss_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
