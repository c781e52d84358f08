"""One settings object, read once from the environment and `.env`.

Everything else receives a `Settings`; nothing below this module reads `os.environ`
for its own configuration, so a bad value is caught at start, not mid-conversation.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from core.errors import ConfigError
from core.logs import configure_logging

DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"
DEFAULT_SENTIMENT_MODEL = "cardiffnlp/twitter-roberta-base-sentiment-latest"
# Meanings in core.precision (which imports torch; reading settings must not).
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "auto")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOCAL, API = "local", "api"
BACKENDS = (LOCAL, API)
COMPILE_MODES = ("auto", "off")
SWITCH = ("on", "off")
# CPU classes a machine can be made to act as (MOOD_CPU_CLASS): each has the flags of the one
# before it and more. Empty: the CPU as detected.
CPU_CLASSES = ("avx2", "avx512", "avx512_bf16", "amx")
DEFAULT_COMPILE_DIR = "~/.cache/mood-bot"
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")

T = TypeVar("T")


@dataclass(frozen=True)
class GenerationSettings:
    """Caption decoding; greedy by default so one photo always gets one caption."""

    max_new_tokens: int = 30
    num_beams: int = 1


@dataclass(frozen=True)
class Limits:
    """What one chat or person may ask of the bot; keeps a flood from starving everyone else."""

    jobs_per_minute: int = 20  # model jobs (a caption, a classification) per person
    max_queued_jobs: int = 32  # jobs waiting or running at once, all chats together
    allowed_chat_ids: frozenset[int] | None = None  # None: every chat


@dataclass(frozen=True)
class ServeSettings:
    """`python -m core serve`: the models as Ray Serve deployments (`core.serve`)."""

    host: str = "127.0.0.1"  # 0.0.0.0 to take requests from other machines
    port: int = 8000
    caption_replicas: int = 1
    sentiment_replicas: int = 1
    # Each replica reserves these; Ray also gives torch floor(cpus) threads in it.
    replica_cpus: float = 1.0
    # Used only where the cluster has GPUs: two replicas at 0.5 share one.
    replica_gpus: float = 0.5


@dataclass(frozen=True)
class Settings:
    telegram_bot_token: str = field(default="", repr=False)
    telegram_api_base_url: str = ""
    caption_model: str = DEFAULT_CAPTION_MODEL
    sentiment_model: str = DEFAULT_SENTIMENT_MODEL
    records_path: Path = Path("records.csv")
    # postgresql://…: records and waiting captions in PostgreSQL (core.database); empty: files.
    database_url: str = field(default="", repr=False)
    model_precision: str = "auto"
    # Per model; CAPTION_PRECISION / SENTIMENT_PRECISION left empty follow MODEL_PRECISION.
    caption_precision: str = "auto"
    sentiment_precision: str = "auto"
    # Where the sentiment model's compiled layers are kept (core.accel.sentiment_compiled); None:
    # they are never compiled.
    compile_dir: Path | None = None
    # Fast paths beside the stock transformers models (core.accel), each checked against stock
    # at load; False runs stock transformers only.
    acceleration: bool = True
    # Act as this lesser CPU class (CPU_CLASSES); empty: as detected.
    cpu_class: str = ""
    hf_token: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    generation: GenerationSettings = GenerationSettings()
    pending_ttl_seconds: float = 15 * 60
    pending_path: Path = Path("pending.json")
    limits: Limits = Limits()
    # Where each model runs: here (transformers) or behind huggingface_hub's InferenceClient.
    caption_backend: str = LOCAL
    sentiment_backend: str = LOCAL
    caption_endpoint: str = ""  # empty: the model id on HF Inference (serverless)
    sentiment_endpoint: str = ""
    inference_timeout_seconds: float = 30.0
    # Micro-batching across chats (bot/inference.py): 0 ms runs each request on its own.
    batch_window_ms: float = 20.0
    max_batch: int = 8
    # Webhook mode instead of polling when webhook_url is set.
    webhook_url: str = ""
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = 8443
    webhook_secret_token: str = field(default="", repr=False)
    # IANA time zone whose midnights split /stats into days.
    timezone: str = "UTC"

    serving: ServeSettings = ServeSettings()

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
        precision = read.choice("MODEL_PRECISION", "auto", PRECISIONS)
        caption_backend = read.choice("CAPTION_BACKEND", LOCAL, BACKENDS)
        sentiment_backend = read.choice("SENTIMENT_BACKEND", LOCAL, BACKENDS)
        webhook_url = read.parse("WEBHOOK_URL", "", _https_url, "an https:// URL")
        return cls(
            telegram_bot_token=read.text("TELEGRAM_BOT_TOKEN", ""),
            telegram_api_base_url=read.parse(
                "TELEGRAM_API_BASE_URL", "", _base_url, "an http(s) URL"
            ),
            caption_model=read.text("CAPTION_MODEL", DEFAULT_CAPTION_MODEL, required=True),
            sentiment_model=read.text("SENTIMENT_MODEL", DEFAULT_SENTIMENT_MODEL, required=True),
            records_path=Path(read.text("RECORDS_PATH", "records.csv", required=True)),
            database_url=read.database_url(),
            model_precision=precision,
            caption_precision=read.choice("CAPTION_PRECISION", precision, PRECISIONS),
            sentiment_precision=read.choice("SENTIMENT_PRECISION", precision, PRECISIONS),
            compile_dir=(
                Path(read.text("COMPILE_DIR", DEFAULT_COMPILE_DIR)).expanduser()
                if read.choice("SENTIMENT_COMPILE", "auto", COMPILE_MODES) == "auto"
                else None
            ),
            acceleration=read.choice("ACCELERATION", "on", SWITCH) == "on",
            cpu_class=read.choice("MOOD_CPU_CLASS", "", ("", *CPU_CLASSES)),
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
            pending_path=Path(read.text("PENDING_PATH", "pending.json", required=True)),
            limits=Limits(
                jobs_per_minute=read.parse(
                    "RATE_LIMIT_PER_MINUTE", 20, _int_in(1, 10_000), "a whole number from 1"
                ),
                max_queued_jobs=read.parse(
                    "MAX_QUEUED_JOBS", 32, _int_in(1, 10_000), "a whole number from 1"
                ),
                allowed_chat_ids=read.parse(
                    "ALLOWED_CHAT_IDS", None, _chat_ids, "chat ids separated by commas"
                ),
            ),
            caption_backend=caption_backend,
            sentiment_backend=sentiment_backend,
            caption_endpoint=read.endpoint("CAPTION_ENDPOINT", "CAPTION_BACKEND", caption_backend),
            sentiment_endpoint=read.endpoint(
                "SENTIMENT_ENDPOINT", "SENTIMENT_BACKEND", sentiment_backend
            ),
            inference_timeout_seconds=read.parse(
                "INFERENCE_TIMEOUT_SECONDS", 30.0, _positive_float, "a number of seconds above 0"
            ),
            batch_window_ms=read.parse(
                "BATCH_WINDOW_MS",
                20.0,
                _float_in(0, 1000),
                "a number of milliseconds from 0 to 1000",
            ),
            max_batch=read.parse("MAX_BATCH", 8, _int_in(1, 64), "a whole number from 1 to 64"),
            webhook_url=webhook_url,
            webhook_listen=read.listen_address(webhook_url),
            webhook_port=read.parse(
                "WEBHOOK_PORT", 8443, _int_in(1, 65535), "a port number from 1 to 65535"
            ),
            webhook_secret_token=read.webhook_secret(webhook_url),
            timezone=read.parse(
                "TIMEZONE", "UTC", _time_zone, "an IANA time zone name such as Europe/Berlin"
            ),
            serving=ServeSettings(
                host=read.text("SERVE_HOST", "127.0.0.1", required=True),
                port=read.parse(
                    "SERVE_PORT", 8000, _int_in(1, 65535), "a port number from 1 to 65535"
                ),
                caption_replicas=read.parse(
                    "SERVE_CAPTION_REPLICAS", 1, _int_in(1, 256), "a whole number from 1 to 256"
                ),
                sentiment_replicas=read.parse(
                    "SERVE_SENTIMENT_REPLICAS", 1, _int_in(1, 256), "a whole number from 1 to 256"
                ),
                replica_cpus=read.parse(
                    "SERVE_REPLICA_CPUS", 1.0, _float_in(0.1, 256), "a number from 0.1 to 256"
                ),
                replica_gpus=read.parse(
                    "SERVE_REPLICA_GPUS", 0.5, _float_in(0, 8), "a number from 0 to 8"
                ),
            ),
        )

    def configure_logging(self) -> None:
        """Called once by each entry point, before anything could log a secret."""
        configure_logging(self.log_level, secrets=self.log_secrets())

    def log_secrets(self) -> list[str]:
        """What no log line may show: tokens, and the database password."""
        tokens = [self.telegram_bot_token, self.hf_token or "", self.webhook_secret_token]
        return [*tokens, *_url_passwords(self.database_url)]


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

    def endpoint(self, name: str, backend_name: str, backend: str) -> str:
        """An Inference Endpoint URL; only meaningful with the api backend."""
        url = self.parse(name, "", _base_url, "an http(s) URL of an Inference Endpoint")
        if url and backend != API:
            raise ConfigError(
                f"{name} is set but {backend_name}={backend}: "
                f"set {backend_name}=api to use the endpoint, or leave {name} empty."
            )
        return url

    def listen_address(self, webhook_url: str) -> str:
        """Where the webhook server listens; checked only in webhook mode (a name may ask DNS)."""
        listen = self.text("WEBHOOK_LISTEN", "0.0.0.0", required=True)
        if webhook_url and not _resolvable(listen):
            raise ConfigError(
                f"WEBHOOK_LISTEN={listen!r} is not accepted: "
                "use an IP address or a host name this machine can resolve."
            )
        return listen

    def database_url(self) -> str:
        """Never echoed back: the URL usually carries a password."""
        url = self.text("DATABASE_URL", "")
        if url and urlparse(url).scheme not in ("postgresql", "postgres"):
            raise ConfigError(
                "DATABASE_URL is not accepted: use postgresql://user:password@host:5432/dbname, "
                "or leave it empty to keep the records in RECORDS_PATH."
            )
        return url

    def webhook_secret(self, webhook_url: str) -> str:
        """Telegram sends it in X-Telegram-Bot-Api-Secret-Token; without it anyone could post."""
        secret = self.text("WEBHOOK_SECRET_TOKEN", "")
        if webhook_url and not secret:
            raise ConfigError(
                "WEBHOOK_SECRET_TOKEN is empty but WEBHOOK_URL is set: "
                "set it to 1-256 characters from A-Z, a-z, 0-9, _ and -."
            )
        if secret and not _WEBHOOK_SECRET.fullmatch(secret):
            raise ConfigError(
                "WEBHOOK_SECRET_TOKEN is not accepted: "
                "use 1-256 characters from A-Z, a-z, 0-9, _ and -."
            )
        return secret


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return convert


def _float_in(low: float, high: float) -> Callable[[str], float]:
    def convert(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:  # also refuses nan
            raise ValueError(raw)
        return value

    return convert


def _chat_ids(raw: str) -> frozenset[int]:
    return frozenset(int(part) for part in raw.split(",") if part.strip())


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


def _resolvable(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            socket.getaddrinfo(host, None)
        except (OSError, UnicodeError):
            return False
    return True


def _time_zone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    # ValueError: a path, not a name; IsADirectoryError: a region such as "Europe".
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise ValueError(raw) from error
    return raw


def _url_passwords(url: str) -> list[str]:
    """The password of a URL as written and decoded, for the log to hide."""
    password = urlparse(url).password if url else None
    return [password, unquote(password)] if password else []


def _https_url(raw: str) -> str:
    """Telegram delivers updates only to https URLs."""
    url = urlparse(raw)
    if url.scheme != "https" or not url.netloc:
        raise ValueError(raw)
    return raw
