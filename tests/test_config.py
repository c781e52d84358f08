from pathlib import Path

import pytest

from core.config import DEFAULT_CAPTION_MODEL, DEFAULT_SENTIMENT_MODEL, Settings
from core.errors import ConfigError


def settings(**env: str) -> Settings:
    return Settings.from_env(env, dotenv_path=None)


def test_defaults_are_the_original_apps_models_and_records_file():
    s = settings()
    assert s.caption_model == DEFAULT_CAPTION_MODEL == "Salesforce/blip-image-captioning-base"
    assert s.sentiment_model == "cardiffnlp/twitter-roberta-base-sentiment-latest"
    assert s.sentiment_model == DEFAULT_SENTIMENT_MODEL
    assert s.records_path == Path("records.csv")
    assert (s.model_precision, s.log_level, s.hf_token) == ("fp32", "INFO", None)
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
