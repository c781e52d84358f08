"""`RecordStore.forget`: a person's rows leave the records file, and nothing else does."""

import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
from multiprocessing.synchronize import Barrier
from pathlib import Path

from core.cli import main
from core.records import COLUMNS, RecordStore, _format_row
from tests.child_env import child_env
from tests.test_records import ORIGINAL_RECORDS, make_record, read_rows

USER, OTHER = 42, 7


def fill(path: Path) -> RecordStore:
    """Rows of USER in chats 1 and 2, and of OTHER in chat 1, interleaved."""
    store = RecordStore(path)
    for i in range(5):
        store.append(make_record(1, f'mine {i}, "quoted"\nline two', user_id=USER))
        store.append(make_record(1, f"other {i}", user_id=OTHER))
        store.append(make_record(2, f"mine elsewhere {i}", user_id=USER))
    return store


def test_forget_in_one_chat_deletes_only_that_persons_rows_there(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    store = fill(path)
    before = read_rows(path)

    assert store.forget(USER, chat_id=1) == 5

    after = read_rows(path)
    assert after == [row for row in before if not (row[6] == "1" and row[7] == str(USER))]
    assert [r.user_text for r in store.recent(1, 20)] == [f"other {i}" for i in reversed(range(5))]
    assert len(store.recent(2, 20)) == 5


def test_forget_without_a_chat_deletes_the_person_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    store = fill(path)

    assert store.forget(USER) == 10

    assert {row[7] for row in read_rows(path)[1:]} == {str(OTHER)}
    assert list(store.records(2)) == []


def test_forget_keeps_the_other_rows_byte_for_byte_and_the_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    store = fill(path)
    os.chmod(path, 0o640)
    only_others = RecordStore(tmp_path / "others.csv")
    for i in range(5):
        only_others.append(make_record(1, f"other {i}", user_id=OTHER))

    store.forget(USER)

    assert path.read_bytes() == only_others.path.read_bytes()
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_forget_with_nothing_to_delete_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    store = fill(path)
    inode = os.stat(path).st_ino

    assert store.forget(12345) == 0
    assert store.forget(USER, chat_id=99) == 0
    assert os.stat(path).st_ino == inode
    assert RecordStore(tmp_path / "missing.csv").forget(USER) == 0
    assert not (tmp_path / "missing.csv").exists()


def test_forget_leaves_a_file_of_the_original_app_alone(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    shutil.copy(ORIGINAL_RECORDS, path)

    assert RecordStore(path).forget(USER) == 0
    assert path.read_bytes() == ORIGINAL_RECORDS.read_bytes()


def test_appends_after_forget_go_to_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    store = fill(path)
    other_store = RecordStore(path)
    assert len(other_store.recent(1, 20)) == 10  # indexed the old file

    store.forget(USER, chat_id=1)
    other_store.append(make_record(1, "after", user_id=OTHER))

    assert [r.user_text for r in other_store.recent(1, 2)] == ["after", "other 4"]
    assert read_rows(path)[-1][1] == "after"


def append_flood(path: str, chat_id: int, count: int, start: Barrier) -> None:
    """Worker: its own store, like the CLI next to the bot."""
    store = RecordStore(path)
    start.wait()
    for i in range(count):
        store.append(make_record(chat_id, f"flood {chat_id}/{i}\nline two", user_id=OTHER))


def test_forget_during_a_flood_of_appends_loses_no_other_row(tmp_path: Path) -> None:
    """Processes and threads append while forgets run over and over; every row they wrote,
    and every row of other people, survives; the person's rows in chat 1 are all gone."""
    path = tmp_path / "records.csv"
    rows = [  # enough that each rewrite takes a while
        _format_row(make_record(chat, f"{text} {i}", user_id=USER))
        for i in range(1000)
        for chat, text in ((1, "mine"), (2, "mine elsewhere"))
    ]
    path.write_bytes(",".join(COLUMNS).encode() + b"\n" + b"".join(rows))
    store = RecordStore(path)
    context = multiprocessing.get_context("spawn")
    chats, per_worker = (100, 101, 102), 60
    start = context.Barrier(len(chats) + 2)
    workers = [
        context.Process(target=append_flood, args=(str(path), chat, per_worker, start))
        for chat in chats
    ]
    for worker in workers:
        worker.start()

    def in_thread() -> None:
        start.wait()
        for i in range(per_worker):
            store.append(make_record(1, f"thread {i}", user_id=OTHER))

    thread = threading.Thread(target=in_thread)
    thread.start()
    start.wait()
    deleted = 0
    while thread.is_alive() or any(worker.is_alive() for worker in workers):
        deleted += store.forget(USER, chat_id=1)
        store.append(make_record(1, "mine again", user_id=USER))
    deleted += store.forget(USER, chat_id=1)
    thread.join()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    rows = read_rows(path)[1:]
    assert not [row for row in rows if row[6] == "1" and row[7] == str(USER)]
    assert deleted >= 1000
    texts = [row[1] for row in rows]
    expected = (
        [f"mine elsewhere {i}" for i in range(1000)]
        + [f"flood {c}/{i}\nline two" for c in chats for i in range(per_worker)]
        + [f"thread {i}" for i in range(per_worker)]
    )
    assert sorted(texts) == sorted(expected)


# --- python -m core forget -----------------------------------------------------------------


def test_cli_forget_in_one_chat(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the repository
    path = tmp_path / "records.csv"
    monkeypatch.setenv("RECORDS_PATH", str(path))
    fill(path)

    assert main(["forget", "--user", str(USER), "--chat", "1"]) == 0

    assert capsys.readouterr().out == f"Deleted 5 records of user {USER} in chat 1 from {path}\n"
    assert [(row[6], row[7]) for row in read_rows(path)[1:]].count(("1", str(USER))) == 0
    assert len(read_rows(path)) == 1 + 10


def test_python_dash_m_core_forget_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    fill(path)
    result = subprocess.run(
        [sys.executable, "-m", "core", "forget", "--user", str(USER)],
        capture_output=True,
        text=True,
        env=child_env(RECORDS_PATH=str(path)),
        cwd=tmp_path,  # no .env from the repository
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Deleted 10 records of user {USER} in every chat from {path}\n"
    assert {row[7] for row in read_rows(path)[1:]} == {str(OTHER)}


def test_cli_forget_error_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "records.csv"
    path.write_text("name,email\n", encoding="utf-8")
    monkeypatch.setenv("RECORDS_PATH", str(path))

    assert main(["forget", "--user", "1"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not a records file" in err and err.count("\n") == 1
    assert path.read_text(encoding="utf-8") == "name,email\n"
