"""Session-wide setup: the Hugging Face Hub is off limits, and tiny models stand in for it.

huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported, so the variables are
set here, before this file (or any test module) imports transformers. A test that tries to
reach the Hub then fails at once instead of hanging on the network.

Compiled sentiment layers (`core.accel.sentiment_compiled`) are kept in the session's own folder,
never in the user's cache: the tiny model is compiled once there, and every bot test that
runs it in bf16 loads that package, as a restarted bot would.

A real PostgreSQL server (tests/postgres_server.py) starts on first use and serves the
whole session; each test that asks for `database_url` gets a new, empty database on it.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest

from core.database import Database
from tests.fake_botapi import FakeBotApi
from tests.postgres_server import PostgresServer, PostgresUnavailable
from tests.tiny_models import TinyModels, build_tiny_blip, build_tiny_roberta


@pytest.fixture(scope="session", autouse=True)
def compile_dir(tmp_path_factory: pytest.TempPathFactory):
    """`COMPILE_DIR`'s default, for `Settings.from_env` here and in child processes."""
    folder = tmp_path_factory.mktemp("compiled")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("core.config.DEFAULT_COMPILE_DIR", str(folder))
        patch.setenv("COMPILE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Folders holding a tiny BLIP captioner and a tiny RoBERTa sentiment model, built once."""
    root = tmp_path_factory.mktemp("tiny_models")
    return TinyModels(
        caption=build_tiny_blip(root / "caption"),
        sentiment=build_tiny_roberta(root / "sentiment"),
    )


@pytest.fixture
async def api():
    """Our Bot API server on 127.0.0.1, for one test."""
    async with FakeBotApi() as server:
        yield server


@pytest.fixture
def ann(api):
    return api.user(1, "Ann")


@pytest.fixture
def bob(api):
    return api.user(2, "Bob")


@pytest.fixture(scope="session")
def postgres_server():
    """Skipped where PostgreSQL cannot run, except in CI (CI=true), where that fails."""
    try:
        with PostgresServer() as server:
            yield server
    except PostgresUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {error}")
        pytest.skip(str(error))


@pytest.fixture
def database_url(postgres_server: PostgresServer):
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture
def database(database_url: str):
    """The test's database, schema created, as `DATABASE_URL` gives it to the bot."""
    database = Database.connect(database_url)
    yield database
    database.close()
