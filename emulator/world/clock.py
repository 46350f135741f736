"""Time as integer 100-ns ticks since the Unix epoch, and the text formats Microsoft uses.

Graph timestamps carry 7 fractional digits (.NET ticks), more than `datetime` holds, so the
emulator keeps exact integers and formats them itself; comparisons in `$filter` stay exact.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

TICKS_PER_SECOND = 10_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?$"
)
_DURATION_RE = re.compile(r"^([+-]?)((?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+)$")
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def now_ticks() -> int:
    """The wall clock in ticks (the emulator runs on the real clock, so a client's own clock and the data agree)."""
    return time.time_ns() // 100


def seconds(value: float) -> int:
    """Seconds to ticks."""
    return round(value * TICKS_PER_SECOND)


def parse_duration(text: str) -> int:
    """'20s', '15m', '-48h', '7d', '167h55m' to ticks; raises ValueError with the accepted forms."""
    m = _DURATION_RE.match(text.strip().replace(" ", ""))
    if not m:
        raise ValueError(f"{text!r} is not a duration (use e.g. '20s', '15m', '48h', '7d', '167h55m')")
    total = sum(float(n) * _UNITS[unit] for n, unit in _PART_RE.findall(m.group(2)))
    return seconds(-total if m.group(1) == "-" else total)


def parse_iso(text: str, *, need_zone: bool = False, need_time: bool = False) -> int:
    """Parse an ISO-8601 UTC timestamp (fractions up to 9 digits, truncated to ticks) into ticks."""
    m = _ISO_RE.match(text)
    if not m or (need_zone and not m.group(8)) or (need_time and not m.group(4)):
        raise ValueError(f"{text!r} is not an ISO-8601 timestamp")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=UTC)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        dt -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    ticks = int((dt - _EPOCH).total_seconds()) * TICKS_PER_SECOND
    return ticks + (int((frac or "0").ljust(7, "0")[:7]) if frac else 0)


def _split(ticks: int) -> tuple[datetime, int]:
    secs, frac = divmod(ticks, TICKS_PER_SECOND)
    return _EPOCH + timedelta(seconds=secs), frac


def graph_time(ticks: int) -> str:
    """Graph style: 7 fractional digits and Z, e.g. 2020-03-13T19:15:41.6195833Z."""
    dt, frac = _split(ticks)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{frac:07d}Z"


def creation_time(ticks: int) -> str:
    """Management Activity CreationTime: no zone, no fraction, e.g. 2015-06-29T20:03:19."""
    return f"{_split(ticks)[0]:%Y-%m-%dT%H:%M:%S}"


def content_time(ticks: int) -> str:
    """Management Activity contentCreated/contentExpiration: milliseconds and Z."""
    dt, frac = _split(ticks)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{frac // 10_000:03d}Z"


def rfc3339(ticks: int) -> str:
    """Ground-truth timestamps: RFC 3339 UTC, microseconds only when needed."""
    dt, frac = _split(ticks)
    if frac:
        return f"{dt:%Y-%m-%dT%H:%M:%S}.{frac:07d}Z"
    return f"{dt:%Y-%m-%dT%H:%M:%S}Z"


def http_date_short(ticks: int) -> str:
    """innerError.date as Graph writes it: 2020-08-18T12:51:51 (no zone)."""
    return creation_time(ticks)


def parse_datetime(value: object) -> datetime:
    """Any timestamp a collector may write (Graph's 7 digits, no zone, `Z`, an offset) as aware UTC.

    The collector audit reads other products' output, so it is as lenient as those products are varied;
    a copy of the agent's reader rather than an import of it (the witness shares no code with the agent).
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a timestamp: {value!r}")
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    text = re.sub(r"\.(\d+)", lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"timestamp out of range: {value!r}") from None


def format_datetime(dt: datetime) -> str:
    """RFC 3339 UTC with a `Z` and a four-digit year; the fraction only when there is one."""
    dt = dt.astimezone(UTC)
    year = f"{dt.year:04d}"
    return year + dt.strftime("-%m-%dT%H:%M:%S.%fZ" if dt.microsecond else "-%m-%dT%H:%M:%SZ")
