"""Tests for core.records_postgres and the CLI with DATABASE_URL: import, export, refusals.

What both stores share is in tests/test_store.py; this is what only the database does.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from core.cli import main
from core.database import Database
from core.errors import RecordsError
from core.records import RecordStore
from core.records_postgres import PostgresRecordStore
from tests.test_records import ORIGINAL_RECORDS, make_record


@pytest.fixture
def store(database: Database) -> PostgresRecordStore:
    return PostgresRecordStore(database)


@pytest.mark.parametrize("text", ["a NUL \x00 inside", "a lone surrogate \ud800"])
def test_text_no_database_can_hold_is_refused_and_nothing_is_written(
    store: PostgresRecordStore, text: str
) -> None:
    with pytest.raises(RecordsError, match="Cannot store a record"):
        store.append(make_record(1, text))
    assert list(store.records()) == []


def test_importing_the_original_apps_file_twice_adds_its_rows_once(
    store: PostgresRecordStore,
) -> None:
    first = store.import_records(RecordStore(ORIGINAL_RECORDS).records())
    again = store.import_records(RecordStore(ORIGINAL_RECORDS).records())
    assert (first.read, first.added, again.read, again.added) == (3, 3, 3, 0)
    imported = list(store.records())
    assert imported == list(RecordStore(ORIGINAL_RECORDS).records())
    assert all(r.chat_id is None and r.timestamp is None for r in imported)


def test_a_grown_file_adds_only_its_new_rows_and_identical_rows_all_stay(
    store: PostgresRecordStore, tmp_path: Path
) -> None:
    path = tmp_path / "records.csv"
    csv_store = RecordStore(path)
    twin = make_record(4, "the same twice")
    csv_store.append(twin)
    csv_store.append(twin)
    assert store.import_records(csv_store.records()).added == 2
    csv_store.append(twin)
    csv_store.append(make_record(4, "new"))
    result = store.import_records(csv_store.records())
    assert (result.read, result.added) == (4, 2)
    assert list(store.records()) == list(csv_store.records())


def test_an_import_that_fails_half_way_adds_nothing(
    store: PostgresRecordStore, tmp_path: Path
) -> None:
    def records_then_a_broken_disk():
        yield make_record(1, "first")
        raise RecordsError("Cannot read the records file: Input/output error")

    with pytest.raises(RecordsError):
        store.import_records(records_then_a_broken_disk())
    assert list(store.records()) == []


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no .env from the repository
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("RECORDS_PATH", str(tmp_path / "unused.csv"))
    path = tmp_path / "records.csv"
    shutil.copy(ORIGINAL_RECORDS, path)
    RecordStore(path).append(make_record(5, "=1+1"))  # upgrades the file to the full format
    RecordStore(path).append(make_record(6, "from another chat"))
    return path


def test_cli_import_csv_twice_adds_nothing_twice_and_export_reads_the_database(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import-csv", str(cli_env)]) == 0
    assert "Imported 5 new records of 5 in" in capsys.readouterr().out
    assert main(["import-csv", str(cli_env)]) == 0
    assert "Imported 0 new records of 5 in" in capsys.readouterr().out

    assert main(["export"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out, newline="")))
    assert [row["user_text"] for row in rows][-2:] == ["'=1+1", "from another chat"]
    assert len(rows) == 5 and captured.err == "Exported 5 records to standard output\n"
    assert main(["export", "--chat", "6", "--out", "six.csv"]) == 0
    assert "from another chat" in Path("six.csv").read_text(encoding="utf-8-sig")
    assert not Path("unused.csv").exists()


def test_cli_import_csv_without_a_database_says_what_to_set(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL")
    assert main(["import-csv", str(cli_env)]) == 2
    assert capsys.readouterr().err == (
        "error: import-csv loads records into a database: set DATABASE_URL=postgresql://…\n"
    )


def test_cli_with_a_database_that_is_down_prints_one_line(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://ann:s3cret@127.0.0.1:9/moods")
    assert main(["export"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: Cannot use the database of DATABASE_URL (postgresql://ann@127.0.0.1:9/moods): "
    )
    assert err.count("\n") == 1 and "s3cret" not in err
