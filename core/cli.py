"""`python -m core analyze`: the whole pipeline from a shell, without Telegram.

How a person tries the models, and how an operator checks a deployment.
`python -m core export [--chat ID] [--out PATH]` writes records as a spreadsheet-safe CSV.
`python -m core import-csv PATH` loads a records file into the database of DATABASE_URL.
Each reads and writes the store the settings choose: RECORDS_PATH, or DATABASE_URL.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from core.config import Settings
from core.errors import CoreError
from core.export import export_csv, write_csv
from core.pipeline import Analysis, Pipeline
from core.records import RecordStore
from core.records_postgres import PostgresRecordStore
from core.sentiment_base import Sentiment
from core.store import open_database, open_records, records_location


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    analyze = commands.add_parser("analyze", help="caption (or take a caption), combine, classify")
    source = analyze.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="photo to caption with the caption model")
    source.add_argument("--caption", help="a caption typed by hand instead of a photo")
    analyze.add_argument("--text", required=True, help="the message that goes with the picture")
    analyze.add_argument("--json", action="store_true", help="print one JSON object")
    analyze.add_argument("--no-record", action="store_true", help="do not append to RECORDS_PATH")
    export = commands.add_parser("export", help="write records as a spreadsheet-safe CSV")
    export.add_argument("--chat", type=int, help="only this chat's records (default: all)")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    load = commands.add_parser(
        "import-csv", help="load a records file into DATABASE_URL; run twice, adds nothing twice"
    )
    load.add_argument("path", type=Path, help="a records file (RECORDS_PATH's format)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "export":
        return _export(args.chat, args.out)
    if args.command == "import-csv":
        return _import_csv(args.path)
    try:
        settings = Settings.from_env()
        settings.configure_logging()
        image = _read(args.image) if args.image else None
        analysis = Pipeline.from_settings(settings).analyze(
            args.text, image=image, caption=args.caption
        )
        if not args.no_record:
            with open_records(settings) as store:
                store.append(analysis.to_record())
    except CoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    recorded = None if args.no_record else records_location(settings)
    if args.json:
        print(json.dumps(_as_json(analysis, recorded), ensure_ascii=False))
    else:
        print(_describe(analysis, recorded))
    return 0


def _export(chat_id: int | None, out: Path | None) -> int:
    try:
        settings = Settings.from_env()
        settings.configure_logging()
        with open_records(settings) as store:
            if out is None:
                count = write_csv(store.records(chat_id), sys.stdout)
            else:
                count = export_csv(store, out, chat_id)
    except CoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Exported {count} records to {out or 'standard output'}", file=sys.stderr)
    return 0


def _import_csv(path: Path) -> int:
    try:
        settings = Settings.from_env()
        settings.configure_logging()
        if not settings.database_url:
            raise CoreError(
                "import-csv loads records into a database: set DATABASE_URL=postgresql://…"
            )
        if not path.is_file():
            raise CoreError(f"Cannot read {path}: there is no such file.")
        with open_database(settings) as database:
            store = PostgresRecordStore(database)
            imported = store.import_records(RecordStore(path).records())
    except CoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    skipped = f", {imported.skipped} skipped (see the log)" if imported.skipped else ""
    print(
        f"Imported {imported.added} new records of {imported.read} in {path} into "
        f"{store.location} ({imported.read - imported.added - imported.skipped} were "
        f"already there{skipped})"
    )
    return 0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CoreError(f"Cannot read {path}: {error.strerror}.") from None


def _as_json(analysis: Analysis, recorded: str | None) -> dict:
    return {
        "caption": analysis.caption,
        "caption_source": analysis.caption_source,
        "text": analysis.text,
        "combined_input": analysis.combined,
        "label": analysis.sentiment.label,
        "score": analysis.sentiment.score,
        "scores": dict(analysis.sentiment.scores),
        "caption_alone": asdict(analysis.caption_sentiment),
        "text_alone": asdict(analysis.text_sentiment),
        "recorded_to": recorded,
    }


def _describe(analysis: Analysis, recorded: str | None) -> str:
    rows = [
        ("caption", f"{analysis.caption}  [{analysis.caption_source}]"),
        ("combined", analysis.combined),
        ("label", _verdict(analysis.sentiment)),
        ("scores", ", ".join(f"{k} {v:.1%}" for k, v in analysis.sentiment.scores.items())),
        ("caption alone", _verdict(analysis.caption_sentiment)),
        ("text alone", _verdict(analysis.text_sentiment)),
        ("recorded to", recorded or "not recorded (--no-record)"),
    ]
    return "\n".join(f"{name + ':':<15}{value}" for name, value in rows)


def _verdict(sentiment: Sentiment) -> str:
    return f"{sentiment.label} ({sentiment.score:.1%})"
