"""How fast `/history` (`recent(chat, 20)`) answers on 1,000,000 records, CSV against PostgreSQL.

Writes the same N rows over many chats (bench_records' rows) to a records file and, with
COPY, to PostgreSQL, then times 200 `recent()` calls on random chats against each store,
as the bot makes them (PostgreSQL: through the pool, each call checking its connection).
Without `--database-url` it starts a throwaway server as the tests do (tests/postgres_server.py,
fsync off, which does not change reads). Run: `python -m bench.bench_store [--rows N]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.bench_records import generate_rows, write_file
from core.database import Database
from core.records import COLUMNS, RecordStore
from core.records_postgres import PostgresRecordStore
from core.store import RecordsStore

TARGET_S = 0.050
CALLS = 200
HISTORY = 20  # /history's largest N


def time_recent(store: RecordsStore, chats: list[int]) -> dict:
    """The first call (the CSV store builds its index then), then one call per chat."""
    began = time.perf_counter()
    store.recent(chats[0], HISTORY)
    first_s = time.perf_counter() - began
    times, returned = [], 0
    for chat_id in chats:
        began = time.perf_counter()
        returned += len(store.recent(chat_id, HISTORY))
        times.append(time.perf_counter() - began)
    return {
        "first_ms": round(first_s * 1000, 1),
        "median_ms": round(statistics.median(times) * 1000, 3),
        "p95_ms": round(statistics.quantiles(times, n=20)[18] * 1000, 3),
        "returned": returned,
    }


def load_database(database: Database, rows: int, chat_ids: list[int], seed: int) -> float:
    """COPY the rows into `records`, as `import-csv` would but without its duplicate check."""
    columns = ", ".join(f'"{column}"' for column in COLUMNS)
    began = time.perf_counter()
    with database.connection() as connection:
        connection.execute("TRUNCATE records")
        with connection.cursor().copy(f"COPY records ({columns}) FROM STDIN") as copy:
            for row in generate_rows(rows, chat_ids, random.Random(seed)):
                copy.write_row(row)
    with database.connection() as connection:
        connection.execute("ANALYZE records")
    return time.perf_counter() - began


@contextlib.contextmanager
def postgres_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    from tests.postgres_server import PostgresServer  # the tests' throwaway server

    with PostgresServer() as server:
        yield server.create_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chats", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", help="an empty database to fill (default: a new server)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    chat_ids = [rng.randrange(-(10**12), 10**12) for _ in range(args.chats)]
    asked = rng.choices(chat_ids, k=CALLS)  # the same chats, in the same order, for both
    results: dict[str, dict] = {}

    def measure(name: str, store: RecordsStore, load_s: float, loaded: Callable[[], str]) -> None:
        results[name] = {"load_s": round(load_s, 2), **time_recent(store, asked)}
        print(f"{name}: {loaded()} in {load_s:.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.csv"
        began = time.perf_counter()
        write_file(path, args.rows, chat_ids, random.Random(args.seed))
        size_mb = path.stat().st_size / 1e6
        measure("csv", RecordStore(path), time.perf_counter() - began, lambda: f"{size_mb:.0f} MB")

    with postgres_url(args.database_url) as url, Database.connect(url) as database:
        load_s = load_database(database, args.rows, chat_ids, args.seed)
        with database.connection() as connection:
            size = connection.execute("SELECT pg_total_relation_size('records')").fetchone()[0]
        measure("postgresql", PostgresRecordStore(database), load_s, lambda: f"{size / 1e6:.0f} MB")

    print(
        f"\nrecent(chat, {HISTORY}) on {args.rows:,} rows over {args.chats:,} chats, {CALLS} calls:"
    )
    print(f"{'':<12}{'first call':>12}{'median':>12}{'p95':>12}")
    for name, figures in results.items():
        print(
            f"{name:<12}{figures['first_ms']:>9.1f} ms{figures['median_ms']:>9.3f} ms"
            f"{figures['p95_ms']:>9.3f} ms"
        )
    met = all(figures["median_ms"] < TARGET_S * 1000 for figures in results.values())
    print(f"target median < {TARGET_S * 1000:.0f} ms: {'met' if met else 'NOT met'} by both")
    print(json.dumps({"rows": args.rows, "chats": args.chats, "target_met": met, **results}))


if __name__ == "__main__":
    main()
