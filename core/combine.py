"""Stage 3: join caption and message the way the original app did: "{caption}. {text}"."""

_SENTENCE_END = (".", "!", "?", "…")
_DANGLING = ",;:-–— "


def combine(caption: str, text: str) -> str:
    """Avoid "sunset.. wow" and "sunset,. wow" when the caption already ends a sentence."""
    caption, text = caption.strip(), text.strip()
    if not caption or not text:
        return caption or text
    if caption.endswith(_SENTENCE_END):
        return f"{caption} {text}"
    return f"{caption.rstrip(_DANGLING)}. {text}"
