"""The last stage: turn results into the messages people read, in Telegram's HTML mode.

Everything a user typed (or BLIP wrote) goes through `html.escape`, so `<b>`, `*`, `_` or
backticks in a caption show literally and can never break a reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from core.pipeline import Analysis
from core.records import Record
from core.sentiment_base import Sentiment

EMOJI = {"positive": "😊", "neutral": "😐", "negative": "😞"}

HELP = """\
I read the mood of a picture plus a message.

<b>In a private chat</b>
• Send a photo, then a message: I describe the photo and classify both together.
• Or send a photo with a caption: I answer at once.
• Or type a caption for a picture in words, then your message.
• /cancel forgets a caption that waits for its message.

<b>In a group</b>
• Reply to a photo (or to a message that describes one) with <code>/analyze your text</code>.
• Or send a photo with the caption <code>/analyze your text</code>.
• <code>/analyze</code> alone: I ask for your text, reply to my question.

/history shows this chat's latest results (<code>/history 10</code> for more)."""

ANALYZE_USAGE = (
    "Reply to a photo, or to a message that describes a picture, with "
    "<code>/analyze your text</code>. You can also send a photo with the caption "
    "<code>/analyze your text</code>."
)
ASK_TEXT = "Now send the message that goes with it."
ASK_TEXT_IN_GROUP = "Reply to this message with the text that goes with it."
NOTHING_PENDING = "Nothing to cancel."
CANCELLED = "Done, I forgot that caption."
DOWNLOAD_FAILED = "I couldn't download that file from Telegram. Please send it again."
TOO_BIG = "That file is over Telegram's 20 MB limit for bots. Please send a smaller picture."
NOT_AN_IMAGE_DOCUMENT = "That file is not a picture. Send a photo or an image file."
NOT_UNDERSTOOD = (
    "I understand photos, image files and text. Send a photo (or describe a picture in "
    "words), then a message. /help explains more."
)
NOT_ALLOWED = "Sorry, this bot is private and does not work in this chat."
BUSY = "I'm busy with other pictures right now. Please try again in a moment."
SOMETHING_WENT_WRONG = "Sorry, something went wrong on my side. Please try again."
HISTORY_USAGE = "Use /history or /history N, with N from 1 to {limit}."
NO_HISTORY = "No results in this chat yet."
HISTORY_UNAVAILABLE = "The history can't be read right now. Please try again later."
NOT_SAVED = "⚠️ This result could not be saved to /history right now."
TRY_AGAIN = "I can't keep track of your caption right now. Please try again in a minute."


def mood(sentiment: Sentiment) -> str:
    return f"{EMOJI.get(sentiment.label, '🔎')} {escape(sentiment.label)} {sentiment.score:.1%}"


def caption_seen(caption: str, *, in_group: bool) -> str:
    ask = ASK_TEXT_IN_GROUP if in_group else ASK_TEXT
    return f"🖼 I see: <i>{escape(_clip(caption))}</i>\n{ask}"


def caption_saved(caption: str, *, in_group: bool) -> str:
    ask = ASK_TEXT_IN_GROUP if in_group else ASK_TEXT
    return f"📝 Caption: <i>{escape(_clip(caption))}</i>\n{ask}"


def slow_down(wait_seconds: float) -> str:
    return f"Slow down a little: try again in {max(1, round(wait_seconds))} s."


def expired(ttl_seconds: float) -> str:
    minutes = max(1, round(ttl_seconds / 60))
    return (
        f"Your caption expired (captions wait {minutes} min for their message). "
        "Send the photo or caption again, then your message."
    )


def result(analysis: Analysis) -> str:
    verdict = analysis.sentiment
    label = EMOJI.get(verdict.label, "🔎") + f" <b>{escape(verdict.label.capitalize())}</b>"
    lines = [
        f"{label} · {verdict.score:.1%}",
        f"🖼 <i>{escape(_clip(analysis.caption))}</i>",
        f"💬 {escape(_clip(analysis.text))}",
        "",
        f"Picture alone: {mood(analysis.caption_sentiment)}",
        f"Message alone: {mood(analysis.text_sentiment)}",
    ]
    driver = _driver(analysis)
    if driver:
        lines.append(driver)
    return "\n".join(lines)


def _driver(analysis: Analysis) -> str:
    """Name the part that decided when the two disagree: the original app's lesson."""
    picture, message = analysis.caption_sentiment.label, analysis.text_sentiment.label
    if picture == message:
        return ""
    if analysis.sentiment.label == message:
        return "Your words decided the mood."
    if analysis.sentiment.label == picture:
        return "The picture decided the mood."
    return ""


def history(records: Sequence[Record], *, width: int = 60) -> str:
    if not records:
        return NO_HISTORY
    lines = [f"🕘 Latest {len(records)} in this chat, newest first:"]
    for number, record in enumerate(records, start=1):
        when = record.timestamp.strftime("%Y-%m-%d %H:%M UTC") if record.timestamp else "—"
        lines += [
            "",
            f"{number}. {when} · {mood(Sentiment(record.label, record.score, {}))}",
            f"🖼 <i>{escape(_shorten(record.image_caption, width))}</i>",
            f"💬 {escape(_shorten(record.user_text, width))}",
        ]
    return "\n".join(lines)


def _clip(text: str, limit: int = 1500) -> str:
    """Keep a reply under Telegram's 4,096 characters whatever was typed."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shorten(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"
