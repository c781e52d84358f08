"""What every sentiment backend shares: the result type and the model card's input preparation.

Kept apart from `core.sentiment` (local RoBERTa, imports torch) so that `core.remote` can
return the very same `Sentiment` without importing torch or transformers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_MENTION = re.compile(r"(?<!\S)@\S+")
_LINK = re.compile(r"(?<!\S)http\S*")


@dataclass(frozen=True)
class Sentiment:
    label: str
    score: float
    scores: Mapping[str, float]


def preprocess_tweet(text: str) -> str:
    """The model card's preprocessing: the model was trained on tweets with these placeholders."""
    return _LINK.sub("http", _MENTION.sub("@user", text))
