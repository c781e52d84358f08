"""Text from outside (Telegram, a shell) made safe for the tokenizer and the records file.

A Python `str` may hold lone surrogates (U+D800-U+DFFF): a shell argument that was not
valid UTF-8 arrives as one (`\\udcff` for the byte 0xFF), and a JSON `\\ud83d` with no
partner decodes to one. No UTF-8 encoder, the tokenizer's included, accepts them, so each
becomes U+FFFD, the replacement character, at the edge; nothing else is changed.
"""

from __future__ import annotations

import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\N{REPLACEMENT CHARACTER}"


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD."""
    return _LONE_SURROGATE.sub(REPLACEMENT, text)
