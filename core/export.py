"""Records leave the bot as a CSV file that a person can open in a spreadsheet safely.

The records file keeps every text exactly as it was sent. An export is read by people:
Excel, LibreOffice Calc and Google Sheets evaluate a cell that starts with `=`, `+`, `-`
or `@` (and, in some of them, with a tab or a carriage return) as a formula, so a message
such as `=HYPERLINK("http://evil.example", "click")` would run on the reader's machine
(CSV or formula injection). Following OWASP's guidance (its CSV Injection page and ASVS
1.2.10: `=`, `+`, `-`, `@`, tab, carriage return, NUL), every text cell that starts with
one of those characters, with a newline, with their full-width forms, or with any of them
after leading whitespace or invisible format characters (a zero-width space, a byte order
mark, a right-to-left override: Unicode category Cf), gets a single quote in front:
spreadsheets read the quote as "this is text" and do not show it. The invisible ones are
a margin, not a known bypass (Excel and LibreOffice take `\u200b=1+1` as text): a quote in
front costs a text cell nothing, and a future importer that drops them would otherwise
see a formula. `|` alone starts no formula (the DDE form `=cmd|...` needs the `=`, which
is quoted), so it is left alone. Numbers the bot wrote itself (the score, chat
and user ids, negative group ids included) stay numbers.

The file is UTF-8 with a byte order mark, so spreadsheets detect the encoding, and lines
end in CRLF (RFC 4180). Written to a path, it appears whole or not at all, readable by
its owner only: it holds people's messages.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import stat
import tempfile
import unicodedata
from collections.abc import Iterable
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from core.errors import CoreError
from core.records import COLUMNS, Record

if TYPE_CHECKING:
    from core.store import RecordsStore

FORMULA_STARTS = frozenset("=+-@\t\r\n\x00＝＋－＠")


def neutralize(cell: str) -> str:
    """Return `cell` with a leading `'` if a spreadsheet would (or might) take it for a formula."""
    first = cell[:1]
    first_visible = next((char for char in cell if not _invisible(char)), "")
    if first in FORMULA_STARTS or first_visible in FORMULA_STARTS:
        return "'" + cell
    return cell


def _invisible(char: str) -> bool:
    """Whitespace, or a format character such as U+200B, U+FEFF or U+202E."""
    return char.isspace() or unicodedata.category(char) == "Cf"


def export_row(record: Record) -> list[str]:
    """One record as the cells of an export row, in the order of `COLUMNS`."""
    timestamp = record.timestamp
    return [
        neutralize(record.image_caption),
        neutralize(record.user_text),
        neutralize(record.combined_input),
        neutralize(record.label),
        repr(float(record.score)),
        "" if timestamp is None else timestamp.astimezone(UTC).isoformat(timespec="microseconds"),
        "" if record.chat_id is None else str(record.chat_id),
        "" if record.user_id is None else str(record.user_id),
        neutralize(record.caption_source),
    ]


def write_csv(records: Iterable[Record], out: TextIO) -> int:
    """Write a header and one spreadsheet-safe row per record to `out`; return the count."""
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    for record in records:
        writer.writerow(export_row(record))
        count += 1
    return count


def csv_bytes(records: Iterable[Record]) -> tuple[bytes, int]:
    """The bytes `export_csv` would write for `records` (BOM included), and the count."""
    out = io.StringIO(newline="")
    count = write_csv(records, out)
    return out.getvalue().encode("utf-8-sig"), count


def export_csv(store: RecordsStore, out: Path, chat_id: int | None = None) -> int:
    """Write the records of `chat_id` (or of every chat) to the file `out`; return the count.

    A symlink is followed: the file it names is replaced, the link kept. Anything but a
    regular file (a device, a pipe, a folder) is refused, never replaced: standard output
    is the way to a pipe. Raises RecordsError when the records cannot be read,
    CoreError when `out` cannot be written; `out` is then left as it was.
    """
    target = Path(os.path.realpath(out))
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.stat(target).st_mode):
            raise CoreError(
                f"Cannot write the export {out}: it is not a regular file "
                "(leave out --out to write to standard output)"
            )
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise CoreError(f"Cannot write the export {out}: {exc.strerror or exc}") from exc
    try:
        with open(fd, "w", encoding="utf-8-sig", newline="") as file:
            count = write_csv(store.records(chat_id), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise CoreError(f"Cannot write the export {out}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return count
