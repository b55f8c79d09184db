"""How often the timer sweep runs, read from its NCRONTAB schedule (pure).

The Functions timer trigger takes six fields, ``{second} {minute} {hour} {day} {month} {day-of-week}``. The sweep
bounds how short a certificate's lifetime can be served: a renewal window narrower than a few sweep intervals
may open and close between two runs. Only the time-of-day fields set the interval here; a schedule restricted to
some days is taken as at least daily.
"""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import pairwise

__all__ = ["sweep_interval"]

_FIELD = re.compile(r"(\*|\d{1,2}(?:-\d{1,2})?)(?:/(\d{1,2}))?", re.ASCII)
_DAY = 86400


def sweep_interval(schedule: str) -> timedelta | None:
    """The longest gap between two runs of ``schedule`` within a day, or ``None`` when it cannot be read.

    Reads ``*``, ``N``, ``N-M``, ``*/S``, ``N-M/S`` and comma lists in the second, minute and hour fields.
    """
    fields = schedule.split()
    if len(fields) != 6:
        return None
    seconds = _expand(fields[0], 60)
    minutes = _expand(fields[1], 60)
    hours = _expand(fields[2], 24)
    if not seconds or not minutes or not hours:
        return None
    moments = sorted(h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds)
    gaps = [later - earlier for earlier, later in pairwise(moments)]
    gaps.append(moments[0] + _DAY - moments[-1])
    longest = max(gaps)
    if any(field != "*" for field in fields[3:]):
        longest = max(longest, _DAY)
    return timedelta(seconds=longest)


def _expand(field: str, size: int) -> set[int] | None:
    values: set[int] = set()
    for part in field.split(","):
        match = _FIELD.fullmatch(part)
        if match is None:
            return None
        span, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            return None
        if span == "*":
            low, high = 0, size - 1
        elif "-" in span:
            low, high = (int(x) for x in span.split("-"))
        else:
            low = int(span)
            high = low if step_text is None else size - 1
        if not 0 <= low <= high < size:
            return None
        values.update(range(low, high + 1, step))
    return values
