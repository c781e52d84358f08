# Mood bot: CPU-only image. Records live in /data, downloaded models in /models:
#   docker run --env-file .env -v mood-data:/data -v mood-models:/models mood-bot
FROM python:3.11-slim

# HF_HUB_DISABLE_TELEMETRY: otherwise huggingface_hub fetches a registry of AI agents for its
# user agent at each start (kept for a day), even with both models cached; where the hub cannot
# be reached, every start waits out that fetch's 3 s timeout.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models \
    HF_HUB_DISABLE_TELEMETRY=1 \
    RECORDS_PATH=/data/records.csv \
    PENDING_PATH=/data/pending.json \
    COMPILE_DIR=/models/compiled

# A C++ compiler: on a CPU with AMX the sentiment model's layers are compiled at the first
# start (core/sentiment_compiled.py), and kept under /models for every later one. Its version
# is the base image's Debian release's: a pinned one breaks when python:3.11-slim moves on.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# The CPU wheel first: PyPI's default torch wheel brings several GB of CUDA libraries.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY core ./core
COPY bot ./bot
RUN pip install .

RUN useradd --create-home --uid 10001 bot \
    && mkdir -p /data /models \
    && chown bot:bot /data /models
USER 10001

VOLUME ["/data", "/models"]
# Only used in webhook mode (WEBHOOK_URL set); polling needs no open port.
EXPOSE 8443
CMD ["python", "-m", "bot"]
