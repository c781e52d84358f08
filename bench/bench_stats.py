"""How fast `/stats` counts and draws a busy chat in a big records file.

Writes a file of N rows (default 1,000,000) where one chat holds a tenth of them
(100,000) and the rest are spread over other chats, with bench_records' generator
(rows one second apart, so the busy chat's rows all fall in the last 30 days), builds the
index once as the bot's first request does, then times what the bot runs in its thread
for `/stats` (read the chat's moods, count them, draw the PNG) for 30 days, 365 days
(per week) and everything, and `records()` on the same chat for comparison.
Run: `python -m bench.bench_stats [--rows N] [--repeat K]`.
"""

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bench.bench_records import write_file
from core.records import RecordStore
from core.stats import chat_stats

TARGET_S = 1.0
BUSY_CHAT = -1001234567890
OTHER_CHATS = 900
BUSY_SHARE = 100  # copies of the busy chat among the 900 others: one row in ten


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """Median and worst wall time, and median CPU time of this process, of `repeat` calls, in
    seconds. On a shared machine the CPU time tells what a call costs when it has a core."""
    walls, cpus = [], []
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - began)
        cpus.append(time.process_time() - began_cpu)
    return statistics.median(walls), max(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    chat_ids = [BUSY_CHAT] * BUSY_SHARE + [rng.randrange(1, 10**12) for _ in range(OTHER_CHATS)]
    figures: dict[str, object] = {"rows": args.rows}

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.csv"
        write_file(path, args.rows, chat_ids, rng)
        store = RecordStore(path)
        began = time.perf_counter()
        store.recent(BUSY_CHAT)
        figures["first_index_s"] = round(time.perf_counter() - began, 3)
        moods = store.moods(BUSY_CHAT)
        figures["busy_chat_rows"] = len(moods)
        now = moods["timestamp"].max().to_pydatetime() + timedelta(minutes=1)
        print(
            f"{args.rows:,} rows, {len(moods):,} in the busy chat; "
            f"index built in {figures['first_index_s']:.2f} s"
        )

        for name, days in (("30", 30), ("365", 365), ("all", None)):
            stats = chat_stats(store, BUSY_CHAT, days, "Europe/Berlin", now)
            assert stats is not None and stats.total == len(moods)
            median, worst, cpu = timed(
                lambda days=days: chat_stats(store, BUSY_CHAT, days, "Europe/Berlin", now),
                args.repeat,
            )
            figures[f"stats_{name}_median_s"] = round(median, 3)
            figures[f"stats_{name}_max_s"] = round(worst, 3)
            figures[f"stats_{name}_cpu_s"] = round(cpu, 3)
            per = "week" if stats.weekly else "day"
            print(
                f"/stats {name}: {stats.total:,} results, bars per {per}, PNG "
                f"{len(stats.png) // 1024} KiB: median {median:.3f} s, worst {worst:.3f} s "
                f"(CPU {cpu:.3f} s)"
            )
        median, _, cpu = timed(lambda: store.moods(BUSY_CHAT), args.repeat)
        figures["moods_median_s"] = round(median, 3)
        print(
            "  of which reading the chat's moods (RecordStore.moods): "
            f"median {median:.3f} s (CPU {cpu:.3f} s)"
        )
        median, _, _ = timed(lambda: sum(1 for _ in store.records(BUSY_CHAT)), 1)
        figures["records_s"] = round(median, 3)
        print(f"  for comparison, records() on the same chat: {median:.3f} s")

    worst = max(value for key, value in figures.items() if key.endswith("_max_s"))
    figures["target_s"] = TARGET_S
    figures["target_met"] = worst < TARGET_S
    load = os.getloadavg()[0]
    figures["load_average_1min"] = round(load, 2)
    print(
        f"target: every /stats under {TARGET_S:.0f} s: {'met' if worst < TARGET_S else 'NOT met'}"
        f" (load average {load:.1f} on {os.cpu_count()} CPUs)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
