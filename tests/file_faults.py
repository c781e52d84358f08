"""Ways to make a file fail under a running program, that hold even when tests run as root.

Root ignores permission bits, so `chmod 444` proves nothing there. What stops root too:
the immutable attribute (`chattr +i`, where the filesystem and capabilities allow it),
a directory where the file should be, a regular file where its directory should be, and
`RLIMIT_FSIZE` (a full disk, seen as EFBIG; set only in a child process).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` (a file or a directory) cannot be written, renamed or deleted inside the block.

    As root: the immutable attribute, or the test is skipped where it cannot be set (tmpfs,
    overlayfs, a container without CAP_LINUX_IMMUTABLE). Otherwise: permission bits.
    """
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root and chattr is not installed: cannot make a file read-only")
    made = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"running as root and `chattr +i` is refused here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


@contextlib.contextmanager
def directory_in_place_of(path: Path) -> Iterator[None]:
    """Move the file aside and put an empty directory at its path; put the file back after."""
    aside = path.with_name(path.name + ".aside")
    existed = path.exists()
    if existed:
        path.rename(aside)
    path.mkdir()
    try:
        yield
    finally:
        path.rmdir()
        if existed:
            aside.rename(path)


@contextlib.contextmanager
def file_in_place_of_its_directory(path: Path) -> Iterator[None]:
    """Move the file's directory aside and put a regular file there; put it back after."""
    directory = path.parent
    aside = directory.with_name(directory.name + ".aside")
    directory.rename(aside)
    directory.write_text("not a directory")
    try:
        yield
    finally:
        directory.unlink()
        aside.rename(directory)
