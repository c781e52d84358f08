"""One settings object, read once from the environment and `.env`.

Everything else receives a `Settings`; nothing below this module reads `os.environ`
for its own configuration, so a bad value is caught at start, not mid-conversation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from dotenv import dotenv_values

from core.errors import ConfigError
from core.logs import configure_logging

DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"
DEFAULT_SENTIMENT_MODEL = "cardiffnlp/twitter-roberta-base-sentiment-latest"
PRECISIONS = ("fp32",)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

T = TypeVar("T")


@dataclass(frozen=True)
class GenerationSettings:
    """Caption decoding; greedy by default so one photo always gets one caption."""

    max_new_tokens: int = 30
    num_beams: int = 1


@dataclass(frozen=True)
class Settings:
    telegram_bot_token: str = field(default="", repr=False)
    telegram_api_base_url: str = ""
    caption_model: str = DEFAULT_CAPTION_MODEL
    sentiment_model: str = DEFAULT_SENTIMENT_MODEL
    records_path: Path = Path("records.csv")
    model_precision: str = "fp32"
    hf_token: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    generation: GenerationSettings = GenerationSettings()
    pending_ttl_seconds: float = 15 * 60

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env"
    ) -> Settings:
        """Real environment variables win over `.env`, as python-dotenv does by default."""
        env: dict[str, str] = {}
        if dotenv_path is not None and Path(dotenv_path).is_file():
            env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        read = _Reader(env)
        return cls(
            telegram_bot_token=read.text("TELEGRAM_BOT_TOKEN", ""),
            telegram_api_base_url=read.parse(
                "TELEGRAM_API_BASE_URL", "", _base_url, "an http(s) URL"
            ),
            caption_model=read.text("CAPTION_MODEL", DEFAULT_CAPTION_MODEL, required=True),
            sentiment_model=read.text("SENTIMENT_MODEL", DEFAULT_SENTIMENT_MODEL, required=True),
            records_path=Path(read.text("RECORDS_PATH", "records.csv", required=True)),
            model_precision=read.choice("MODEL_PRECISION", "fp32", PRECISIONS),
            hf_token=read.text("HF_TOKEN", "") or None,
            log_level=read.choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
            generation=GenerationSettings(
                max_new_tokens=read.parse(
                    "CAPTION_MAX_NEW_TOKENS", 30, _int_in(1, 200), "a whole number from 1 to 200"
                ),
                num_beams=read.parse(
                    "CAPTION_NUM_BEAMS", 1, _int_in(1, 10), "a whole number from 1 to 10"
                ),
            ),
            pending_ttl_seconds=read.parse(
                "PENDING_TTL_SECONDS", 900.0, _positive_float, "a number of seconds above 0"
            ),
        )

    def configure_logging(self) -> None:
        """Called once by each entry point, before anything could log a secret."""
        configure_logging(self.log_level, secrets=[self.telegram_bot_token, self.hf_token or ""])


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, default: str, *, required: bool = False) -> str:
        value = self._env.get(name, default).strip()
        if required and not value:
            raise ConfigError(f"{name} is empty: set it or remove it to use the default.")
        return value or default

    def choice(
        self, name: str, default: str, allowed: tuple[str, ...], *, upper: bool = False
    ) -> str:
        value = self.text(name, default)
        value = value.upper() if upper else value.lower()
        if value not in allowed:
            raise ConfigError(f"{name}={value!r} is not accepted: use one of {', '.join(allowed)}.")
        return value

    def parse(self, name: str, default: T, convert: Callable[[str], T], accepts: str) -> T:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            return convert(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not accepted: use {accepts}.") from None


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return convert


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError(raw)
    return value


def _base_url(raw: str) -> str:
    url = urlparse(raw)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(raw)
    return raw.rstrip("/")
