"""How numbers read wherever people read them: one style for every tab, plot and display string.

WER and CER as percentages with one decimal ("4.2 %"), RTFx as "12.3×", seconds with the
precision their size needs ("34 ms", "2.79 s", "27.1 s", "1,234 s"), counts with thousands
separators, a missing figure as "–". Pure functions of a number; machine values (JSON, CSV, the
API's rows) stay raw numbers and never pass through here. The browser component has the same
functions in JavaScript (gradio_browser_asr/js/display.js), checked on tests/vectors/display.json.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Optional

import pandas as pd

MISSING = "–"
RTFX_AXIS = "RTFx (×, higher is faster)"
WER_AXIS = "WER (%, lower is better)"
AXIS_FORMAT = ",.1~f"  # d3-format for the plots' ticks: "6.4", "1,234", never "6.425722"


def _finite(value) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def percent(fraction, digits: int = 1) -> str:
    """A fraction as a percentage: 0.0423 -> "4.2 %", 1 -> "100.0 %"."""
    value = _finite(fraction)
    return MISSING if value is None else f"{value * 100:,.{digits}f} %"


def rtfx(value) -> str:
    """A real-time factor: 12.34 -> "12.3×" (audio seconds per processing second)."""
    number = _finite(value)
    return MISSING if number is None else f"{number:,.1f}×"


def seconds(value) -> str:
    """A time in the precision its size needs: 0.0342 -> "34 ms", 2.786 -> "2.79 s", 27.14 -> "27.1 s",
    1234.5 -> "1,234 s"."""
    number = _finite(value)
    if number is None:
        return MISSING
    size = abs(number)
    if size < 1:
        return f"{number * 1000:,.0f} ms"
    if size < 10:
        return f"{number:.2f} s"
    if size < 100:
        return f"{number:.1f} s"
    return f"{number:,.0f} s"


def duration(value) -> str:
    """An audio length: seconds under a minute, then minutes, then hours: 7.1 -> "7.10 s",
    754 -> "12 min 34 s", 5400 -> "1.50 h"."""
    number = _finite(value)
    if number is None:
        return MISSING
    if number < 60:
        return seconds(number)
    if number < 3600:
        minutes, rest = divmod(round(number), 60)
        return f"{minutes} min {rest} s"
    return f"{number / 3600:,.2f} h"


def clock(value) -> str:
    """A time within a recording: 7.1 -> "0:07.1", 3725.25 -> "1:02:05.2"."""
    number = _finite(value)
    if number is None:
        return MISSING
    tenths = round(max(0.0, number) * 10)
    hours, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    text = f"{minutes}:{rest // 10:02d}.{rest % 10}"
    return f"{hours}:{minutes:02d}:{rest // 10:02d}.{rest % 10}" if hours else text


def count(value) -> str:
    """A whole number with thousands separators: 12345 -> "12,345"."""
    number = _finite(value)
    return MISSING if number is None else f"{round(number):,}"


def number(value, digits: int = 1) -> str:
    """Any other figure, `digits` decimals and thousands separators."""
    figure = _finite(value)
    return MISSING if figure is None else f"{figure:,.{digits}f}"


def money(value) -> str:
    """Dollars: cents above a dollar, two significant digits below: 1.234 -> "$1.23", 0.00412 -> "$0.0041"."""
    amount = _finite(value)
    if amount is None:
        return MISSING
    if amount == 0 or abs(amount) >= 1:
        return f"${amount:,.2f}"
    decimals = max(2, 1 - math.floor(math.log10(abs(amount))))
    return f"${amount:.{decimals}f}"


def megabytes(value) -> str:
    """A size in MB: 4000 -> "4,000 MB"."""
    return MISSING if _finite(value) is None else f"{count(value)} MB"


def column_format(name: str) -> Optional[Callable[[object], str]]:
    """The format of a results column, by its name (Compare, Evaluate and Batch share the names):
    None for a column that is not a figure (model, text, error...)."""
    if name in ("wer", "cer", "mean_wer") or name.startswith("wer: "):
        return percent
    if name in ("rtfx", "throughput_rtfx"):
        return rtfx
    if name == "audio_seconds":
        return duration
    if name in ("start", "end"):
        return clock
    if name.endswith("seconds"):
        return seconds
    if name == "cost_per_audio_hour":
        return money
    if name in ("substitutions", "deletions", "insertions", "reference_words", "utterances", "failed", "datasets",
                "jobs_done", "batch_size"):  # fmt: skip
        return count
    if name == "hallucinations_per_minute":
        return number
    if name == "win_rate":  # the Arena's leaderboard
        return percent
    if name in ("votes", "wins", "losses", "ties"):
        return count
    if name in ("rating", "lower", "upper"):  # Elo-like points: whole numbers
        return partial(number, digits=0)
    return None


def frame(table: pd.DataFrame) -> pd.DataFrame:
    """A results table as people read it: each figure column formatted by its name, the rest as is
    (a missing text as "")."""
    shown = table.copy()
    for name in shown.columns:
        fmt = column_format(str(name))
        if fmt is not None:
            shown[name] = [fmt(v) for v in shown[name]]
        elif not pd.api.types.is_numeric_dtype(shown[name]):
            shown[name] = shown[name].astype(object).where(shown[name].notna(), "")
    return shown


def plot_points(table: pd.DataFrame, wer_column: str = "wer") -> pd.DataFrame:
    """WER (%) against RTFx, one point per model that has both, rounded as the tables show them
    (the plot's axes and tooltips read "4.2", "12.3", not 0.0423 or 12.345678)."""
    if table.empty or wer_column not in table or "rtfx" not in table:
        return pd.DataFrame({"model": [], "rtfx": [], "wer_percent": []})
    points = table.dropna(subset=[wer_column, "rtfx"])
    return pd.DataFrame({
        "model": points["model"],
        "rtfx": points["rtfx"].astype(float).round(1),
        "wer_percent": (points[wer_column].astype(float) * 100).round(1),
    })  # fmt: skip
