import logging
from pathlib import Path

import pytest

from core.config import DEFAULT_CAPTION_MODEL, DEFAULT_SENTIMENT_MODEL, Settings
from core.errors import ConfigError
from core.logs import Redact


def settings(**env: str) -> Settings:
    return Settings.from_env(env, dotenv_path=None)


def test_defaults_are_the_original_apps_models_and_records_file():
    s = settings()
    assert s.caption_model == DEFAULT_CAPTION_MODEL == "Salesforce/blip-image-captioning-base"
    assert s.sentiment_model == "cardiffnlp/twitter-roberta-base-sentiment-latest"
    assert s.sentiment_model == DEFAULT_SENTIMENT_MODEL
    assert s.records_path == Path("records.csv")
    assert (s.model_precision, s.log_level, s.hf_token) == ("auto", "INFO", None)
    assert (s.caption_precision, s.sentiment_precision) == ("auto", "auto")
    assert s.telegram_api_base_url == ""
    assert s.pending_ttl_seconds == 900


def test_values_are_read_from_the_environment():
    s = settings(
        TELEGRAM_BOT_TOKEN="1:abc",
        TELEGRAM_API_BASE_URL="http://127.0.0.1:8081/",
        CAPTION_MODEL="/models/blip",
        SENTIMENT_MODEL="/models/roberta",
        RECORDS_PATH="/data/records.csv",
        HF_TOKEN="hf_x",
        LOG_LEVEL="debug",
        CAPTION_MAX_NEW_TOKENS="12",
        CAPTION_NUM_BEAMS="3",
        PENDING_TTL_SECONDS="60",
    )
    assert s.telegram_bot_token == "1:abc"
    assert s.telegram_api_base_url == "http://127.0.0.1:8081"
    assert (s.caption_model, s.sentiment_model) == ("/models/blip", "/models/roberta")
    assert s.records_path == Path("/data/records.csv")
    assert (s.hf_token, s.log_level) == ("hf_x", "DEBUG")
    assert (s.generation.max_new_tokens, s.generation.num_beams) == (12, 3)
    assert s.pending_ttl_seconds == 60


def test_compiled_layers_are_kept_in_the_users_cache_unless_a_folder_or_off_is_set(
    monkeypatch, tmp_path
):
    monkeypatch.setattr("core.config.DEFAULT_COMPILE_DIR", "~/.cache/mood-bot")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert settings().compile_dir == tmp_path / ".cache" / "mood-bot"
    assert settings(COMPILE_DIR="/models/compiled").compile_dir == Path("/models/compiled")
    assert settings(SENTIMENT_COMPILE="OFF", COMPILE_DIR="/models/compiled").compile_dir is None
    with pytest.raises(ConfigError, match="SENTIMENT_COMPILE='never' is not accepted: use one of"):
        settings(SENTIMENT_COMPILE="never")


def test_secrets_stay_out_of_the_repr():
    text = repr(settings(TELEGRAM_BOT_TOKEN="1:SECRET", HF_TOKEN="hf_SECRET"))
    assert "SECRET" not in text


def test_dotenv_file_is_read_and_the_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("RECORDS_PATH=from-dotenv.csv\nLOG_LEVEL=WARNING\n")
    s = Settings.from_env({"LOG_LEVEL": "ERROR"}, dotenv_path=dotenv)
    assert s.records_path == Path("from-dotenv.csv")
    assert s.log_level == "ERROR"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_PRECISION": "fp8"}, r"MODEL_PRECISION='fp8' is not accepted: use one of fp32"),
        ({"LOG_LEVEL": "LOUD"}, r"LOG_LEVEL='LOUD' is not accepted: use one of DEBUG, INFO"),
        ({"TELEGRAM_API_BASE_URL": "localhost:8081"}, r"TELEGRAM_API_BASE_URL=.*http\(s\) URL"),
        ({"CAPTION_MAX_NEW_TOKENS": "many"}, r"CAPTION_MAX_NEW_TOKENS='many'.*1 to 200"),
        ({"CAPTION_NUM_BEAMS": "0"}, r"CAPTION_NUM_BEAMS='0'.*1 to 10"),
        ({"PENDING_TTL_SECONDS": "-5"}, r"PENDING_TTL_SECONDS='-5'.*above 0"),
        ({"PENDING_TTL_SECONDS": "nan"}, r"PENDING_TTL_SECONDS='nan'"),
        ({"CAPTION_MODEL": "  "}, r"CAPTION_MODEL is empty"),
        ({"RECORDS_PATH": ""}, r"RECORDS_PATH is empty"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_accepts(env, message):
    with pytest.raises(ConfigError, match=message):
        settings(**env)


def test_models_run_locally_unless_a_backend_says_api():
    s = settings()
    assert (s.caption_backend, s.sentiment_backend) == ("local", "local")
    assert (s.caption_endpoint, s.sentiment_endpoint, s.inference_timeout_seconds) == ("", "", 30)
    remote = settings(
        CAPTION_BACKEND="API",
        CAPTION_ENDPOINT="https://abc.us-east-1.aws.endpoints.huggingface.cloud/",
        SENTIMENT_BACKEND="api",
        INFERENCE_TIMEOUT_SECONDS="12.5",
    )
    assert (remote.caption_backend, remote.sentiment_backend) == ("api", "api")
    assert remote.caption_endpoint == "https://abc.us-east-1.aws.endpoints.huggingface.cloud"
    assert remote.sentiment_endpoint == ""  # the model id through HF Inference
    assert remote.inference_timeout_seconds == 12.5


def test_webhook_mode_is_off_unless_a_url_is_set():
    s = settings()
    assert (s.webhook_url, s.webhook_listen, s.webhook_port) == ("", "0.0.0.0", 8443)
    hooked = settings(
        WEBHOOK_URL="https://bot.example.org/telegram",
        WEBHOOK_SECRET_TOKEN="s3cret_-TOKEN",
        WEBHOOK_LISTEN="127.0.0.1",
        WEBHOOK_PORT="8080",
    )
    assert hooked.webhook_url == "https://bot.example.org/telegram"
    assert (hooked.webhook_listen, hooked.webhook_port) == ("127.0.0.1", 8080)
    assert hooked.webhook_secret_token == "s3cret_-TOKEN"
    assert "s3cret" not in repr(hooked)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CAPTION_BACKEND": "cloud"},
            r"CAPTION_BACKEND='cloud' is not accepted: use one of local, api",
        ),
        ({"SENTIMENT_BACKEND": "remote"}, r"SENTIMENT_BACKEND='remote'.*local, api"),
        (
            {"SENTIMENT_BACKEND": "api", "SENTIMENT_ENDPOINT": "abc.endpoints.cloud"},
            r"SENTIMENT_ENDPOINT='abc.endpoints.cloud'.*http\(s\) URL of an Inference Endpoint",
        ),
        (
            {"CAPTION_ENDPOINT": "https://abc.endpoints.huggingface.cloud"},
            r"CAPTION_ENDPOINT is set but CAPTION_BACKEND=local: set CAPTION_BACKEND=api",
        ),
        ({"INFERENCE_TIMEOUT_SECONDS": "0"}, r"INFERENCE_TIMEOUT_SECONDS='0'.*above 0"),
        ({"WEBHOOK_URL": "http://bot.example.org/hook"}, r"WEBHOOK_URL=.*an https:// URL"),
        (
            {"WEBHOOK_URL": "https://bot.example.org/hook"},
            r"WEBHOOK_SECRET_TOKEN is empty but WEBHOOK_URL is set",
        ),
        (
            {"WEBHOOK_URL": "https://bot.example.org/hook", "WEBHOOK_SECRET_TOKEN": "no spaces"},
            r"WEBHOOK_SECRET_TOKEN is not accepted: use 1-256 characters",
        ),
        ({"WEBHOOK_PORT": "70000"}, r"WEBHOOK_PORT='70000'.*1 to 65535"),
        ({"WEBHOOK_LISTEN": " "}, r"WEBHOOK_LISTEN is empty"),
    ],
)
def test_a_bad_backend_or_webhook_value_names_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        settings(**env)


HOOKED = {"WEBHOOK_URL": "https://bot.example.org/hook", "WEBHOOK_SECRET_TOKEN": "s3cret"}


@pytest.mark.parametrize("listen", ["not-an-address", "999.1.1.1", "under_score..host"])
def test_a_webhook_listen_address_that_is_no_address_names_the_variable(listen):
    with pytest.raises(ConfigError) as error:
        settings(**HOOKED, WEBHOOK_LISTEN=listen)
    assert str(error.value) == (
        f"WEBHOOK_LISTEN={listen!r} is not accepted: "
        "use an IP address or a host name this machine can resolve."
    )


@pytest.mark.parametrize("listen", ["0.0.0.0", "::", "127.0.0.1", "localhost"])
def test_a_webhook_listens_on_an_ip_address_or_a_resolvable_name(listen):
    assert settings(**HOOKED, WEBHOOK_LISTEN=listen).webhook_listen == listen


def test_limits_and_the_pending_file_are_read_from_the_environment():
    s = settings(
        RATE_LIMIT_PER_MINUTE="5",
        MAX_QUEUED_JOBS="3",
        ALLOWED_CHAT_IDS="1, -500,",
        PENDING_PATH="/data/p.json",
    )
    assert (s.limits.jobs_per_minute, s.limits.max_queued_jobs) == (5, 3)
    assert s.limits.allowed_chat_ids == frozenset({1, -500})
    assert s.pending_path == Path("/data/p.json")
    assert settings().limits.allowed_chat_ids is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALLOWED_CHAT_IDS": "1,me"}, r"ALLOWED_CHAT_IDS='1,me' is not accepted: use chat ids"),
        ({"RATE_LIMIT_PER_MINUTE": "0"}, r"RATE_LIMIT_PER_MINUTE='0' is not accepted"),
        ({"MAX_QUEUED_JOBS": "lots"}, r"MAX_QUEUED_JOBS='lots' is not accepted"),
    ],
)
def test_bad_limits_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        settings(**env)


def test_stats_days_split_at_midnight_utc_unless_a_time_zone_is_set():
    assert settings().timezone == "UTC"
    assert settings(TIMEZONE=" Europe/Berlin ").timezone == "Europe/Berlin"


@pytest.mark.parametrize("name", ["Mars/Olympus", "Europe", "../../etc/passwd", "CEST+2"])
def test_a_time_zone_that_is_not_an_iana_name_is_refused_in_one_line(name):
    with pytest.raises(ConfigError) as refused:
        settings(TIMEZONE=name)
    assert str(refused.value) == (
        f"TIMEZONE={name!r} is not accepted: use an IANA time zone name such as Europe/Berlin."
    )


def test_database_url_is_kept_out_of_the_repr_and_a_bad_one_is_not_echoed():
    s = settings(DATABASE_URL="postgresql://bot:pa%2Fss@db.internal:5432/moods")
    assert s.database_url == "postgresql://bot:pa%2Fss@db.internal:5432/moods"
    assert "pa%2Fss" not in repr(s) and settings().database_url == ""
    with pytest.raises(ConfigError) as raised:
        settings(DATABASE_URL="mysql://bot:SECRET@db/moods")
    assert str(raised.value).startswith("DATABASE_URL is not accepted: use postgresql://")
    assert "SECRET" not in str(raised.value)


def test_the_database_password_is_scrubbed_from_the_log(caplog):
    s = settings(DATABASE_URL="postgresql://bot:pa%2Fss@db.internal/moods")
    caplog.handler.addFilter(Redact(s.log_secrets()))
    with caplog.at_level(logging.INFO):
        logging.getLogger("x").info("connecting to %s with pa/ss", s.database_url)
    assert "pa%2Fss" not in caplog.text and "pa/ss" not in caplog.text


def test_ray_serve_is_local_with_one_replica_each_unless_set():
    s = settings()
    assert (s.serving.host, s.serving.port) == ("127.0.0.1", 8000)
    assert (s.serving.caption_replicas, s.serving.sentiment_replicas) == (1, 1)
    assert (s.serving.replica_cpus, s.serving.replica_gpus) == (1.0, 0.5)
    s = settings(
        SERVE_HOST="0.0.0.0",
        SERVE_PORT="9000",
        SERVE_CAPTION_REPLICAS="4",
        SERVE_SENTIMENT_REPLICAS="2",
        SERVE_REPLICA_CPUS="2",
        SERVE_REPLICA_GPUS="0.25",
    )
    assert (s.serving.host, s.serving.port) == ("0.0.0.0", 9000)
    assert (s.serving.caption_replicas, s.serving.sentiment_replicas) == (4, 2)
    assert (s.serving.replica_cpus, s.serving.replica_gpus) == (2.0, 0.25)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SERVE_PORT": "80000"}, r"SERVE_PORT='80000' is not accepted: use a port number"),
        ({"SERVE_CAPTION_REPLICAS": "0"}, r"SERVE_CAPTION_REPLICAS='0' is not accepted"),
        ({"SERVE_SENTIMENT_REPLICAS": "two"}, r"SERVE_SENTIMENT_REPLICAS='two' is not accepted"),
        ({"SERVE_REPLICA_CPUS": "0"}, r"SERVE_REPLICA_CPUS='0' is not accepted: use a number"),
        ({"SERVE_REPLICA_GPUS": "-1"}, r"SERVE_REPLICA_GPUS='-1' is not accepted"),
        ({"SERVE_HOST": " "}, r"SERVE_HOST is empty"),
    ],
)
def test_bad_serve_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        settings(**env)
