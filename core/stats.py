"""A chat's moods over time: counts per day (or week) with pandas, a chart with matplotlib.

`chat_stats()` reads one chat's moods from the store, keeps the period asked for (whole days
in the configured time zone, today included), counts positive, neutral and negative results
per day, or per week when the period is longer than `DAILY_UP_TO_DAYS`, and draws them as
stacked bars with the mean mood as a line: +score for a positive result, -score for a
negative one, 0 for neutral, so the line runs from -1 (all surely negative) to +1. It also
counts each person's results, most active first, for the caption. It is CPU work: the bot
runs it in a thread.

The chart is drawn on a `Figure` of its own with the Agg backend (no pyplot, no display), so
several threads can draw at once.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from matplotlib import dates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from core.store import RecordsStore

LABELS = ("positive", "neutral", "negative")
COLOURS = {"positive": "#4caf50", "neutral": "#b0bec5", "negative": "#e53935"}
SIGN = {"positive": 1.0, "neutral": 0.0, "negative": -1.0}
DAILY_UP_TO_DAYS = 60
TOP_PEOPLE = 5
CHART_INCHES, CHART_DPI = (10.0, 5.0), 100  # 1000 × 500 px


@dataclass(frozen=True)
class PersonMoods:
    user_id: int
    total: int
    counts: Mapping[str, int]  # results per label in LABELS


@dataclass(frozen=True)
class ChatStats:
    days: int | None  # None: every record of the chat
    weekly: bool  # bars per week rather than per day
    total: int
    counts: Mapping[str, int]  # results per label in LABELS; other labels only count in total
    people: tuple[PersonMoods, ...]  # the most active, most results first
    png: bytes


def chat_stats(
    store: RecordsStore,
    chat_id: int,
    days: int | None,
    timezone: str,
    now: datetime | None = None,
) -> ChatStats | None:
    """This chat's moods in the last `days` days (today included), or None without results."""
    return summarize(store.moods(chat_id), days, timezone, now)


def summarize(
    moods: pd.DataFrame, days: int | None, timezone: str, now: datetime | None = None
) -> ChatStats | None:
    """Count and draw a table of `core.records.MOOD_COLUMNS`; None when the period is empty."""
    today = pd.Timestamp(now or datetime.now().astimezone()).tz_convert(timezone)
    today = today.tz_localize(None).normalize()
    local = moods["timestamp"].dt.tz_convert(timezone).dt.tz_localize(None)
    label = moods["label"].str.lower()
    keep = local < today + pd.Timedelta(days=1)
    if days is not None:
        keep &= local >= today - pd.Timedelta(days=days - 1)
    table = pd.DataFrame(
        {
            "day": local[keep].dt.normalize(),
            "label": label[keep],
            "mood": label[keep].map(SIGN) * moods["score"][keep],
            "user_id": moods["user_id"][keep],
        }
    )
    if table.empty:
        return None
    first = table["day"].min() if days is None else today - pd.Timedelta(days=days - 1)
    weekly = (today - first).days + 1 > DAILY_UP_TO_DAYS
    if weekly:  # each week starts on a Monday
        table["day"] -= pd.to_timedelta(table["day"].dt.day_of_week, unit="D")
        first -= pd.Timedelta(days=first.weekday())
    bins = pd.date_range(first, today, freq="7D" if weekly else "D")
    per_bin = _count(table, "day").reindex(index=bins, fill_value=0)
    mean_mood = table.groupby("day")["mood"].mean().reindex(bins)
    totals = per_bin.sum()
    return ChatStats(
        days=days,
        weekly=weekly,
        total=len(table),
        counts={name: int(totals[name]) for name in LABELS},
        people=_most_active(table),
        png=render(per_bin, mean_mood, weekly, timezone),
    )


def _most_active(table: pd.DataFrame) -> tuple[PersonMoods, ...]:
    totals = table["user_id"].value_counts().head(TOP_PEOPLE)  # most results first
    by_person = _count(table[table["user_id"].isin(totals.index)], "user_id")
    return tuple(
        PersonMoods(
            user_id=int(user_id),
            total=int(total),
            counts={name: int(by_person.at[user_id, name]) for name in LABELS},
        )
        for user_id, total in totals.items()
    )


def _count(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Results per value of `by` (rows) and label (a column for each of LABELS)."""
    counts = table.groupby([by, "label"]).size().unstack("label", fill_value=0)
    return counts.reindex(columns=list(LABELS), fill_value=0)


def render(per_bin: pd.DataFrame, mean_mood: pd.Series, weekly: bool, timezone: str) -> bytes:
    """Stacked bars of `per_bin` (one column per label) and `mean_mood` as a line, as PNG."""
    figure = Figure(figsize=CHART_INCHES, dpi=CHART_DPI)
    figure.subplots_adjust(left=0.07, right=0.92, top=0.92, bottom=0.15)  # fixed: layout is slow
    FigureCanvasAgg(figure)
    bars = figure.add_subplot()
    bars.xaxis_date()
    start = dates.date2num(per_bin.index)  # matplotlib's day numbers
    left, right = start + 0.1, start + (6.9 if weekly else 0.9)
    bottom = np.zeros(len(per_bin))
    for name in LABELS:
        top = bottom + per_bin[name].to_numpy()
        # One collection of rectangles per label: `bar()` makes a patch per bar and
        # measures each one, which took most of the drawing time.
        corners = [(left, bottom), (left, top), (right, top), (right, bottom)]
        outlines = np.stack([np.stack(corner, axis=-1) for corner in corners], axis=1)
        bars.add_collection(PolyCollection(outlines, color=COLOURS[name], label=name))
        bottom = top
    bars.set_xlim(start[0], start[-1] + (7 if weekly else 1))
    x = (left + right) / 2
    bars.set_ylabel("results per week" if weekly else "results per day")
    bars.set_title(f"Moods per {'week' if weekly else 'day'} ({timezone})")
    bars.set_ylim(0, max(1, bottom.max()) * 1.25)  # room for the legends above the bars
    bars.legend(loc="upper left", ncols=3)
    line = bars.twinx()
    line.plot(x, mean_mood.to_numpy(), color="#1e3a8a", marker="o", markersize=3, label="mean mood")
    line.axhline(0, color="#1e3a8a", linewidth=0.5, linestyle=":")
    line.set_ylim(-1.05, 1.05)
    line.set_ylabel("mean mood (-1 negative … +1 positive)")
    line.legend(loc="upper right")
    figure.autofmt_xdate(bottom=0.15)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
