"""`python -m core analyze`: the whole pipeline from a shell, without Telegram.

How a person tries the models, and how an operator checks a deployment.
`python -m core export [--chat ID] [--out PATH]` writes records as a spreadsheet-safe CSV.
`python -m core forget --user ID [--chat ID]` deletes a person's records, for an operator
answering a deletion request; the bot may keep running meanwhile.

`python -m core import-csv PATH` loads a records file into the database of DATABASE_URL.
Each reads and writes the store the settings choose: RECORDS_PATH, or DATABASE_URL.

`python -m core serve [--address auto]` serves both models on Ray Serve (`core.serve`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import stat
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from core.config import Settings
from core.errors import CoreError
from core.export import export_csv, write_csv
from core.images import MAX_FILE_BYTES, load_image
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
    forget = commands.add_parser("forget", help="delete every record of one person")
    forget.add_argument("--user", type=int, required=True, help="the person's Telegram user id")
    forget.add_argument("--chat", type=int, help="only in this chat (default: every chat)")

    load = commands.add_parser(
        "import-csv", help="load a records file into DATABASE_URL; run twice, adds nothing twice"
    )
    load.add_argument("path", type=Path, help="a records file (RECORDS_PATH's format)")

    serve = commands.add_parser(
        "serve", help="serve both models on Ray Serve, as Inference Endpoints (the serve extra)"
    )
    serve.add_argument(
        "--address",
        help="Ray cluster to join: auto (the one `ray start` runs on this machine) or "
        "ray://HOST:10001; default: a Ray of this command's own",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "export":
            status = _export(args.chat, args.out)
        elif args.command == "forget":
            status = _forget(args.user, args.chat)
        elif args.command == "import-csv":
            status = _import_csv(args.path)
        elif args.command == "serve":
            status = _serve(args.address)
        else:
            status = _analyze(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped reading (`| head`): end quietly, as a tool killed by SIGPIPE does,
        # with nothing left for Python to flush into the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return status


def _analyze(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
        settings.configure_logging()
        # Checked before the models load: a bad file costs no model loading.
        image = load_image(_read(args.image)) if args.image else None
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


def _serve(address: str | None) -> int:
    try:
        settings = Settings.from_env()
        settings.configure_logging()
        if importlib.util.find_spec("ray") is None:
            raise CoreError("Ray is not installed: pip install -e '.[serve]'.")
        from core.serve import serve_forever  # Ray: only for this command

        serve_forever(settings, address)
    except CoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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


def _forget(user_id: int, chat_id: int | None) -> int:
    try:
        settings = Settings.from_env()
        settings.configure_logging()
        with open_records(settings) as store:
            count = store.forget(user_id, chat_id)
    except CoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    where = "every chat" if chat_id is None else f"chat {chat_id}"
    location = records_location(settings)
    print(f"Deleted {count} records of user {user_id} in {where} from {location}")
    return 0


def _read(path: Path) -> bytes:
    """At most `MAX_FILE_BYTES` of a regular file: not a device, a pipe or a folder."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before it can be refused.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise CoreError(f"Cannot read {path}: {error.strerror}.") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CoreError(f"Cannot read {path}: it is not a regular file.")
    with open(fd, "rb") as file:
        try:
            data = file.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            raise CoreError(f"Cannot read {path}: {error.strerror}.") from None
    if len(data) > MAX_FILE_BYTES:
        raise CoreError(
            f"Cannot read {path}: it is over {MAX_FILE_BYTES // (1 << 20)} MB; "
            "send a smaller picture."
        )
    return data


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
