"""`python -m core analyze`: the whole pipeline from a shell, without Telegram.

How a person tries the models, and how an operator checks a deployment.
`python -m core export [--chat ID] [--out PATH]` writes records as a spreadsheet-safe CSV.
`python -m core serve [--address auto]` serves both models on Ray Serve (`core.serve`).
"""

from __future__ import annotations

import argparse
import importlib.util
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
from core.sentiment_base import Sentiment


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
    if args.command == "export":
        return _export(args.chat, args.out)
    if args.command == "serve":
        return _serve(args.address)
    try:
        settings = Settings.from_env()
        settings.configure_logging()
        image = _read(args.image) if args.image else None
        analysis = Pipeline.from_settings(settings).analyze(
            args.text, image=image, caption=args.caption
        )
        if not args.no_record:
            RecordStore(settings.records_path).append(analysis.to_record())
    except CoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    recorded = None if args.no_record else str(settings.records_path)
    if args.json:
        print(json.dumps(_as_json(analysis, recorded), ensure_ascii=False))
    else:
        print(_describe(analysis, recorded))
    return 0


def _export(chat_id: int | None, out: Path | None) -> int:
    try:
        settings = Settings.from_env()
        settings.configure_logging()
        store = RecordStore(settings.records_path)
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
