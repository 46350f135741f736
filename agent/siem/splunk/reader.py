"""Splunk through the search export endpoint (`/services/search/v2/jobs/export`, v1 on 404).

Export streams results without creating a saved job, as newline-delimited JSON; rows marked
`preview: true` are progress snapshots and are skipped. A WARN/ERROR/FATAL `messages` entry on any
line (a search peer down, results that may be incomplete) makes the answer IncompleteResult.
Counts come from `bin _time` + `stats count, dc(id)`; ids from `fields <id> | fields - _*` so
`_raw` never crosses the wire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlencode

import orjson

from agent.archive.codec import parse_time
from agent.http import HttpClient
from agent.siem.base import Filter, IncompleteResult, SiemError, Target, TokenSource, answer_shape, valid_id
from agent.siem.keys import SiemConfig
from agent.siem.splunk.config import SplunkConfig
from agent.siem.transport import SiemHttp
from agent.sources.base import Window

V2 = "/services/search/v2/jobs/export"
V1 = "/services/search/jobs/export"  # deprecated since 9.0.1, still the only one on older servers


def _quote(value: str) -> str:
    if '"' in value or "\\" in value:
        raise SiemError(f"refusing to quote {value!r} into SPL")
    return f'"{value}"'


def _filter(f: Filter) -> str:
    text = f"{f.field} IN ({', '.join(_quote(v) for v in f.values)})"
    return f"NOT {text}" if f.negate else text


def base_search(target: Target, tenant: str) -> str:
    terms = [f"index={_quote(target.index or 'main')}", f"sourcetype={_quote(target.source)}"]
    if target.tenant_field:
        terms.append(f"{target.tenant_field}={_quote(tenant)}")
    terms += [_filter(f) for f in target.filters]
    return "search " + " ".join(terms)


def count_search(target: Target, tenant: str, bucket: timedelta) -> str:
    return (f"{base_search(target, tenant)} | bin _time span={int(bucket.total_seconds())}s "
            f"| stats count AS n, dc({target.id_field}) AS d BY _time")


def ids_search(target: Target, tenant: str) -> str:
    return f"{base_search(target, tenant)} | fields {target.id_field} | fields - _*"


def present_search(target: Target, tenant: str, ids: Sequence[str]) -> str:
    listed = ", ".join(_quote(i) for i in ids)
    return f"{base_search(target, tenant)} {target.id_field} IN ({listed}) | stats count BY {target.id_field}"


def results(body: bytes) -> Iterator[dict[str, Any]]:
    """Final result rows of an export body; preview rows and the empty last row are skipped."""
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise SiemError("Splunk export returned a line that is not JSON") from None
        if not isinstance(doc, dict):
            continue
        messages = doc.get("messages")
        if isinstance(messages, list):
            _check_messages(messages)
        if doc.get("preview") or not isinstance(doc.get("result"), dict):
            continue
        yield doc["result"]


# A WARN in a search answer is how Splunk says the result may lack events: a search peer down or
# not reached ("Unable to distribute to peer ... status = Down"), a peer's search ending early, a
# search finalized before its end. None of these is visible in the rows, and a smaller search
# fails the same way, so the bucket is unverified (never "missing"). INFO/DEBUG are progress.
_INCOMPLETE_TYPES = ("WARN", "ERROR", "FATAL")


def _check_messages(messages: list[Any]) -> None:
    bad = [m for m in messages if isinstance(m, dict) and str(m.get("type", "")).upper() in _INCOMPLETE_TYPES]
    if bad:
        text = " ".join(str(bad[0].get("text", "")).split())[:300]
        raise IncompleteResult(f"Splunk search {str(bad[0].get('type')).upper()}: {text}", splittable=False)


def _one(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


class SplunkSiem:
    """The Siem protocol for a Splunk search head (management port)."""

    name: ClassVar[str] = "splunk"

    def __init__(self, cfg: SiemConfig[SplunkConfig], http: HttpClient, token: TokenSource) -> None:
        self.cfg = cfg
        self.path = V2

        async def headers() -> dict[str, str]:
            return {"Authorization": f"{cfg.vendor.auth_scheme} {await token()}",
                    "Content-Type": "application/x-www-form-urlencoded"}

        self.transport = SiemHttp(http, headers, attempts=cfg.max_attempts)

    @property
    def stats(self) -> Any:
        return self.transport.stats

    async def export(self, search: str, window: Window) -> list[dict[str, Any]]:
        form = urlencode({"search": search, "output_mode": "json",
                          "earliest_time": f"{window.start.timestamp():.6f}",
                          "latest_time": f"{window.end.timestamp():.6f}"}).encode()
        resp = await self.transport.send("POST", f"{self.cfg.url}{self.path}", body=form, ok=(200, 404),
                                         what="Splunk export")
        if resp.status == 404 and self.path == V2:
            self.path = V1
            resp = await self.transport.send("POST", f"{self.cfg.url}{self.path}", body=form, what="Splunk export")
        elif resp.status == 404:
            raise SiemError("Splunk answered 404 on the search export endpoint")
        return list(results(resp.body))

    async def check(self) -> None:
        now = datetime.now().astimezone()
        target = next(iter(self.cfg.targets.values()))
        await self.export(f"{base_search(target, '-')} | stats count AS n", Window(now - timedelta(minutes=5), now))

    async def count_buckets(self, tenant: str, stream: str, window: Window,
                            bucket: timedelta) -> dict[datetime, tuple[int, int]]:
        rows = await self.export(count_search(self.cfg.targets[stream], tenant, bucket), window)
        with answer_shape("Splunk export"):
            return {_time(r["_time"]): (int(r["n"]), int(r["d"])) for r in rows}

    async def ids(self, tenant: str, stream: str, window: Window) -> AsyncIterator[str]:
        field = self.cfg.targets[stream].id_field
        for r in await self.export(ids_search(self.cfg.targets[stream], tenant), window):
            value = _one(r.get(field))
            if isinstance(value, str):
                yield value

    async def present(self, tenant: str, stream: str, ids: Sequence[str], window: Window) -> set[str]:
        checked = [i for i in ids if valid_id(stream, i)]
        if not checked:
            return set()
        target = self.cfg.targets[stream]
        rows = await self.export(present_search(target, tenant, checked), window)
        found = (_one(r.get(target.id_field)) for r in rows)
        return {v for v in found if isinstance(v, str) and v}

    async def aclose(self) -> None:
        return None


def _time(value: Any) -> datetime:
    """Splunk writes `_time` as ISO 8601 with the user's offset, or epoch seconds."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
        return datetime.fromtimestamp(float(value), UTC)
    return parse_time(value)
