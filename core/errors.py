"""Errors a person can cause or fix, each with a message fit to show them.

Anything else is a bug: it is logged with its stack trace, never shown raw.
"""


class CoreError(Exception):
    """Base of every error whose message is meant for a person."""


class ConfigError(CoreError):
    """A setting in the environment or `.env` has a value we cannot use."""


class ModelLoadError(CoreError):
    """A model could not be loaded from the hub, the cache or a local folder."""


class BadImageError(CoreError):
    """The bytes we were given are not an image we can safely decode."""


class RecordsError(CoreError):
    """The records file cannot be read or written."""


class DatabaseError(RecordsError):
    """The PostgreSQL database of DATABASE_URL cannot be reached, or refused the bot's work.

    A RecordsError, so whatever copes with an unwritable records file copes with it too;
    waiting captions in the database fail with it as well.
    """


class BadTextError(CoreError):
    """The text (or typed caption) is empty once whitespace is removed."""


class ModelServiceError(CoreError):
    """A remote model (`CAPTION_BACKEND=api` or `SENTIMENT_BACKEND=api`) failed a request."""


class ModelBusyError(ModelServiceError):
    """The remote model stayed loading, rate limited or silent through our bounded retries."""


class ModelAuthError(ModelServiceError):
    """The remote model service refused our token (HTTP 401 or 403)."""
