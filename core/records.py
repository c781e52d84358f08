"""The records file: one CSV row per classified message, shared by the bot and the CLI.

Appends hold a thread lock and an exclusive `flock` and write each row with one
fsynced write, so the bot and the CLI can append at the same time without losing
or mixing rows. A file in the original app's five-column format is upgraded
atomically on the first append. `recent()` answers from an in-memory index of
row offsets per chat, built by one scan and then caught up from where the last
scan stopped, so rows appended by other processes show up without rereading the
file.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import logging
import os
import stat
import tempfile
import threading
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from core.errors import RecordsError

logger = logging.getLogger(__name__)

_LEGACY_COLUMNS = ("image_caption", "user_text", "combined_input", "label", "score")
COLUMNS = (*_LEGACY_COLUMNS, "timestamp", "chat_id", "user_id", "caption_source")
_CAPTION_SOURCES = ("", "image", "manual")
_HEADER_LIMIT = 4096  # a header longer than this is not one of ours
_CHUNK = 1 << 22  # bytes read per step while indexing
_TAIL = 64  # bytes before the indexed end that must not change, or the index is stale


@dataclass(frozen=True)
class Record:
    """One classified message, as stored in one row of the records file."""

    image_caption: str
    user_text: str
    combined_input: str
    label: str
    score: float
    timestamp: datetime | None  # None only for rows written by the original app
    chat_id: int | None = None
    user_id: int | None = None
    caption_source: str = ""  # "image", "manual", or "" for rows of the original app

    def __post_init__(self) -> None:
        # The index reads the chat id from the raw bytes after the third comma from the
        # end of a row, so the last three columns must never contain a comma.
        if self.caption_source not in _CAPTION_SOURCES:
            raise ValueError(f"caption_source must be one of {_CAPTION_SOURCES}")
        if self.timestamp is not None and self.timestamp.utcoffset() is None:
            raise ValueError("timestamp must be timezone-aware")


class RecordStore:
    """Appends records to a CSV file and finds a chat's newest ones quickly."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._write_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._index = _RowIndex()

    @property
    def path(self) -> Path:
        return self._path

    def append(self, record: Record) -> None:
        """Add one row; safe while other threads and processes append to the same file."""
        row = _format_row(record)
        with self._write_lock:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with self._locked_file() as f:
                    self._append_locked(f, row)
            except OSError as exc:
                raise RecordsError(
                    f"Cannot write the records file {self._path}: {exc.strerror or exc}"
                ) from exc

    def recent(self, chat_id: int, n: int = 5) -> list[Record]:
        """Return up to `n` records of this chat, newest first."""
        if n <= 0:
            return []
        with self._index_lock:
            try:
                with open(self._path, "rb") as f:
                    self._index.catch_up(f, self._path)
                    return self._read_rows(f, self._index.newest_first(chat_id), n)
            except FileNotFoundError:
                return []
            except OSError as exc:
                raise RecordsError(
                    f"Cannot read the records file {self._path}: {exc.strerror or exc}"
                ) from exc

    @contextlib.contextmanager
    def _locked_file(self) -> Iterator[BinaryIO]:
        """Open the file for appending, holding an exclusive flock on the file the path names now.

        An upgrade replaces the file, so whoever waited for the lock on the old one must reopen.
        """
        while True:
            with open(self._path, "a+b", buffering=0) as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                if _is_current(f, self._path):
                    yield f
                    return

    def _append_locked(self, f: BinaryIO, row: bytes) -> None:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            _write_all(f, _csv_line(COLUMNS).encode() + row, size)
            return
        columns, _ = _read_header(f, self._path)
        if columns is None:
            raise RecordsError(f"{self._path} does not start with the records header")
        if columns == _LEGACY_COLUMNS:
            self._upgrade(f, row)
            return
        if os.pread(f.fileno(), 1, size - 1) != b"\n":
            size = self._drop_torn_tail(f, size)
        _write_all(f, row, size)

    def _drop_torn_tail(self, f: BinaryIO, size: int) -> int:
        """Cut off a last row that lacks its newline, which would swallow the next row."""
        with self._index_lock:
            self._index.catch_up(f, self._path)
            end = self._index.end
        f.truncate(end)
        logger.warning(
            "Dropped an incomplete last row (%d bytes) from %s, left by an interrupted write",
            size - end,
            self._path,
        )
        return end

    def _upgrade(self, f: BinaryIO, row: bytes) -> None:
        """Rewrite a file of the original app with the full header, then add `row`."""
        f.seek(0)
        try:
            rows = list(csv.reader(io.StringIO(f.read().decode("utf-8-sig"), newline="")))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise RecordsError(f"Cannot upgrade {self._path}: it is not readable CSV") from exc
        lines = [_csv_line(COLUMNS)]
        for number, fields in enumerate(rows[1:], start=1):
            if not fields:
                continue
            if len(fields) != len(_LEGACY_COLUMNS):
                raise RecordsError(
                    f"Cannot upgrade {self._path}: record {number} has {len(fields)} columns, "
                    f"expected {len(_LEGACY_COLUMNS)}"
                )
            lines.append(_csv_line([*fields, "", "", "", ""]))
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        _replace_atomically(self._path, "".join(lines).encode() + row, mode)
        logger.info(
            "Upgraded %s from the original five-column format (%d rows kept)",
            self._path,
            len(lines) - 1,
        )

    def _read_rows(self, f: BinaryIO, offsets: Iterator[int], n: int) -> list[Record]:
        records: list[Record] = []
        for offset in offsets:
            try:
                records.append(_parse_row(_row_at(f, offset)))
            except (ValueError, csv.Error) as exc:
                logger.warning(
                    "Skipping unreadable row at byte %d of %s: %s", offset, self._path, exc
                )
                continue
            if len(records) == n:
                break
        return records


class _RowIndex:
    """Start offsets of each chat's rows, for a file that only grows.

    Row boundaries are found in the raw bytes: the csv module quotes every field that
    holds a newline, so a row ends at the first newline after an even number of quotes.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._columns: tuple[str, ...] | None = None
        self._tail = b""  # the bytes just before `end`, to notice a rewritten file
        self.end = 0  # just past the last complete row (or the header) indexed
        self._rows: dict[bytes, array[int]] = {}  # raw chat id -> row start offsets

    def catch_up(self, f: BinaryIO, path: Path) -> None:
        """Index the rows added since the last call; start over if the file was rewritten."""
        fd = f.fileno()
        seen = os.pread(fd, len(self._tail), self.end - len(self._tail))
        if os.fstat(fd).st_size < self.end or seen != self._tail:
            logger.debug("%s was rewritten or replaced; indexing it again", path)
            self._reset()
        if self._columns is None:
            self._columns, self.end = _read_header(f, path)
        if self._columns == COLUMNS:
            self._scan(f)
        self._tail = os.pread(fd, min(self.end, _TAIL), max(self.end - _TAIL, 0))

    def newest_first(self, chat_id: int) -> Iterator[int]:
        return reversed(self._rows.get(str(chat_id).encode(), array("q")))

    def _scan(self, f: BinaryIO) -> None:
        rows = self._rows
        start = pos = self.end
        odd_quotes = 0
        carry = b""
        f.seek(start)
        while chunk := f.read(_CHUNK):
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()  # not yet ended by a newline
            for line in lines:
                pos += len(line) + 1
                odd_quotes ^= line.count(b'"') & 1
                if odd_quotes:
                    continue
                # The last line of a row ends with ",chat_id,user_id,caption_source".
                fields = line.rsplit(b",", 3)
                if len(fields) == 4 and fields[1]:
                    offsets = rows.get(fields[1])
                    if offsets is None:
                        offsets = rows[fields[1]] = array("q")
                    offsets.append(start)
                start = pos
        self.end = start


def _is_current(f: BinaryIO, path: Path) -> bool:
    """Whether `f` is still the file that `path` names."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(f.fileno())
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _read_header(f: BinaryIO, path: Path) -> tuple[tuple[str, ...] | None, int]:
    """Return the file's columns and the offset of its first row; None while the header is cut."""
    f.seek(0)
    head = f.read(_HEADER_LIMIT)
    end = head.find(b"\n") + 1
    line = head[: end or len(head)].rstrip(b"\r\n").removeprefix(b"\xef\xbb\xbf")
    for columns in (COLUMNS, _LEGACY_COLUMNS):
        header = ",".join(columns).encode()
        if end and line == header:
            return columns, end
        if not end and header.startswith(line):
            return None, 0
    raise RecordsError(f"{path} is not a records file: its first line is not the records header")


def _write_all(f: BinaryIO, data: bytes, size: int) -> None:
    """Append `data` in one write and fsync; on failure cut the file back to `size`.

    Cutting back keeps a full disk from leaving half a row that would swallow the next one.
    """
    try:
        written = f.write(data)
        while written < len(data):  # only a full disk makes a write come up short
            written += f.write(data[written:])
        os.fsync(f.fileno())
    except OSError:
        with contextlib.suppress(OSError):
            f.truncate(size)
        raise


def _replace_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself survive a crash
    finally:
        os.close(directory)


def _csv_line(fields: Sequence[str]) -> str:
    """Format one CSV row ending in "\\n".

    The writer is told "\\r\\n" because it only quotes the line-ending characters it was
    given: with "\\n" alone, a field holding a lone "\\r" would be left unquoted and would
    split the row when read back.
    """
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n").writerow(fields)
    return out.getvalue()[:-2] + "\n"


def _format_row(record: Record) -> bytes:
    timestamp = record.timestamp
    stamp = (
        "" if timestamp is None else timestamp.astimezone(UTC).isoformat(timespec="microseconds")
    )
    return _csv_line(
        [
            record.image_caption,
            record.user_text,
            record.combined_input,
            record.label,
            repr(float(record.score)),
            stamp,
            "" if record.chat_id is None else str(record.chat_id),
            "" if record.user_id is None else str(record.user_id),
            record.caption_source,
        ]
    ).encode("utf-8")


def _row_at(f: BinaryIO, offset: int) -> bytes:
    """Read the whole row that starts at `offset`, over as many lines as its quotes span."""
    f.seek(offset)
    lines = []
    quotes = 0
    while True:
        line = f.readline()
        if not line:
            raise ValueError("the row is cut short")
        lines.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            return b"".join(lines)


def _parse_row(raw: bytes) -> Record:
    fields = next(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    if len(fields) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} columns, found {len(fields)}")
    caption, text, combined, label, score, timestamp, chat_id, user_id, source = fields
    return Record(
        image_caption=caption,
        user_text=text,
        combined_input=combined,
        label=label,
        score=float(score),
        timestamp=datetime.fromisoformat(timestamp) if timestamp else None,
        chat_id=int(chat_id) if chat_id else None,
        user_id=int(user_id) if user_id else None,
        caption_source=source,
    )
