"""
The times a message carries, as people see them: when it arrived (its mbox
C{From } line, L{arrivalTime}) and when it was sent (its C{Date} header,
L{isoDate}), in ISO 8601 UTC.  Pure functions; none raises on a malformed
date: they give 0 or C{""} instead.
"""

import calendar
import email.utils
import functools
from datetime import datetime, timedelta, timezone


def isoTime(seconds):
    """
    POSIX seconds as ISO 8601 UTC, e.g. C{2026-12-04T16:19:35Z}.
    """
    try:
        return isoFormat(datetime.fromtimestamp(int(seconds), timezone.utc))
    except (ValueError, OverflowError, OSError, TypeError):
        return "1970-01-01T00:00:00Z"


def isoFormat(moment):
    """
    A UTC L{datetime} as ISO 8601, the year in four digits (C{strftime}'s
    C{%Y} gives C{428} for the year 428 that a Date header may say).
    """
    return "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format(
        moment.year, moment.month, moment.day, moment.hour, moment.minute,
        moment.second)


_WEEKDAYS = frozenset([b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"])
_MONTHS = {name: n + 1 for n, name in enumerate(
    b"jan feb mar apr may jun jul aug sep oct nov dec".split())}


def _plainArrival(words):
    """
    L{arrivalTime} of the usual C{Www Mmm dd hh:mm:ss yyyy} without
    C{strptime} (a light listing reads one per message), or L{None} for
    anything else (C{strptime} decides).
    """
    weekday, month, day, clock, year = words
    month = _MONTHS.get(month.lower())
    parts = clock.split(b":")
    if (month is None or weekday.lower() not in _WEEKDAYS or len(parts) != 3
            or not (day.isdigit() and len(day) <= 2 and year.isdigit() and len(year) == 4)
            or not all(p.isdigit() and 1 <= len(p) <= 2 for p in parts)):
        return None
    hour, minute, second = (int(p) for p in parts)
    if hour > 23 or minute > 59 or second > 59 or int(day) == 0:
        return None
    try:
        datetime(int(year), month, int(day))
    except ValueError:
        return None
    return calendar.timegm((int(year), month, int(day), hour, minute, second, 0, 0, 0))


def arrivalTime(separator):
    """
    The time of an mbox C{From } line (C{From sender Thu Nov 26 12:00:00
    2026}), as POSIX seconds; 0 when it has none that parses.

    @type separator: L{bytes}
    """
    words = separator.split()
    if len(words) < 7:
        return 0
    plain = _plainArrival(words[-5:])
    if plain is not None:
        return plain
    try:
        stamp = b" ".join(words[-5:]).decode("ascii")
        return calendar.timegm(datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y")
                               .timetuple())
    except (ValueError, UnicodeDecodeError):
        return 0


#: L{email.utils.parsedate_tz}, remembering the last few: a message's
#: summary (L{isoDate}) and its search document
#: (L{twisted_mail.mail.query.sentDay}) both read its Date header.
parseDate = functools.lru_cache(maxsize=16)(email.utils.parsedate_tz)


def isoDate(value):
    if not value:
        return ""
    try:
        fields = parseDate(value)
        if fields is None:
            return ""
        # As email.utils.parsedate_to_datetime, a date without a zone
        # taken as UTC.
        parsed = datetime(*fields[:6], tzinfo=timezone(timedelta(seconds=fields[9])))
    except (TypeError, ValueError, IndexError, OverflowError):
        return ""
    try:
        return isoFormat(parsed.astimezone(timezone.utc))
    except (ValueError, OverflowError):
        return ""
