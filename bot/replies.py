"""The last stage: turn results into the messages people read, in Telegram's HTML mode.

Everything a user typed (or BLIP wrote) goes through `html.escape`, so `<b>`, `*`, `_` or
backticks in a caption show literally and can never break a reply. Telegram counts a
message's length in UTF-16 code units (an emoji is two), up to 4,096 once the HTML is
parsed: user text is cut in those units, so a reply fits whatever was typed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from core.pipeline import Analysis
from core.records import Record
from core.sentiment_base import Sentiment
from core.stats import LABELS, ChatStats

EMOJI = {"positive": "😊", "neutral": "😐", "negative": "😞"}
# Spelled as each model's config has them: "Positive" in cardiffnlp's multilingual model.

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

<b>Your data</b>
• /history shows this chat's latest results (<code>/history 10</code> for more).
• /stats draws this chat's moods over the last 30 days (<code>/stats 7</code>, \
<code>/stats 365</code>, <code>/stats all</code>).
• /export sends this chat's results as a CSV file (in groups: admins only).
• /forget deletes your results in this chat, after you confirm."""

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
STATS_USAGE = "Use /stats, /stats N with N from 1 to {limit} days, or /stats all."
STATS_UNAVAILABLE = "The statistics can't be read right now. Please try again later."
EXPORT_ADMINS_ONLY = "Sorry, in a group only its administrators can export the results."
EXPORT_UNAVAILABLE = "The results can't be exported right now. Please try again later."
EXPORT_TOO_BIG = (
    "This chat's results are over Telegram's 50 MB limit for files from bots. The bot's "
    "operator can export them from the shell: <code>python -m core export --chat {chat_id} "
    "--out FILE</code>."
)
FORGET_ASK = (
    "Delete all your results in this chat? Nothing else is touched, and it can't be undone."
)
FORGET_YES, FORGET_CANCEL = "Yes, delete them", "Cancel"
FORGET_NOT_YOURS = "Only the person who asked can answer this."
FORGET_CANCELLED = "Cancelled: nothing was deleted."
FORGET_UNAVAILABLE = "Your results can't be deleted right now. Please try again later."

NOT_SAVED = "⚠️ This result could not be saved to /history right now."
TRY_AGAIN = "I can't keep track of your caption right now. Please try again in a minute."


def mood(sentiment: Sentiment) -> str:
    """A label from the model's config, or from a hand-edited records file: kept short."""
    label = _shorten(sentiment.label, 20)
    return f"{_emoji(sentiment.label)} {escape(label)} {sentiment.score:.1%}"


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
    label = _emoji(verdict.label) + f" <b>{escape(verdict.label.capitalize())}</b>"
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
    """At `width` units per text, 20 records take about 3,600 of Telegram's 4,096 units."""
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


def _units(text: str) -> int:
    """The length Telegram sees: one unit per character, two for one beyond U+FFFF."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _cut(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-16 units, never inside a character."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return text[:index]
    return text


def no_stats(days: int | None) -> str:
    return f"No results in this chat {_period(days)}."


def stats_caption(stats: ChatStats, names: dict[int, str]) -> str:
    """Totals for the period, then (when `names` are given: a group) the most active people."""
    results = "result" if stats.total == 1 else "results"
    lines = [f"{stats.total} {results} {_period(stats.days)}: {_moods(stats.counts)}"]
    if names:
        lines += ["", "Most active:"]
        for person in stats.people:
            shares = {label: person.counts[label] / person.total for label in LABELS}
            lines.append(
                f"{escape(names[person.user_id])}: {person.total} · "
                + " · ".join(f"{EMOJI[label]} {shares[label]:.0%}" for label in LABELS)
            )
    return "\n".join(lines)


def exported(count: int) -> str:
    return f"{count} {'result' if count == 1 else 'results'} from this chat."


def forgotten(count: int) -> str:
    if count == 0:
        return "Done: you had no results stored in this chat."
    return f"Done: deleted {count} {'result' if count == 1 else 'results'} of yours in this chat."


def _emoji(label: str) -> str:
    return EMOJI.get(label.lower(), "🔎")


def _period(days: int | None) -> str:
    if days is None:
        return "so far"
    return "in the last day" if days == 1 else f"in the last {days} days"


def _moods(counts: Mapping[str, int]) -> str:
    return " · ".join(f"{EMOJI[label]} {counts[label]}" for label in LABELS)


def _clip(text: str, limit: int = 1500) -> str:
    """Keep a reply under Telegram's 4,096 units whatever was typed: two texts of 1,500."""
    return text if _units(text) <= limit else _cut(text, limit - 1) + "…"


def _shorten(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if _units(flat) <= width else _cut(flat, width - 1).rstrip() + "…"
