"""An in-process stand-in for `agent.http.HttpClient`, for fast unit tests of SIEM readers and writers.

It answers each request with the next scripted answer (a Response, or an exception to raise, such as
the TransientApiError a dropped connection becomes) and records what was sent. The end-to-end tests
run the same code over loopback TLS against the emulator; these pin the decisions per answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from agent.http import Response
from agent.siem import config as siem_config
from agent.siem.keys import SiemConfig

Answer = Response | Exception | Callable[["Sent"], Response]


def answer(status: int, body: Any = b"", headers: Mapping[str, str] | None = None) -> Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(status, dict(headers or {}), data, "https://siem.test")


@dataclass
class Sent:
    method: str
    url: str
    headers: Mapping[str, str]
    data: bytes | None


@dataclass
class FakeHttp:
    answers: list[Answer]
    sent: list[Sent] = field(default_factory=list)
    repeat_last: bool = False  # keep answering the last answer once the script runs out

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      params: Mapping[str, str] | None = None, data: bytes | None = None,
                      tag: tuple[str, str] | None = None) -> Response:
        sent = Sent(method, url, dict(headers or {}), data)
        self.sent.append(sent)
        if not self.answers:
            raise AssertionError(f"unexpected request {method} {url}")
        nxt = self.answers[0] if self.repeat_last and len(self.answers) == 1 else self.answers.pop(0)
        if isinstance(nxt, Exception):
            raise nxt
        return nxt(sent) if callable(nxt) else nxt


class Sleeps:
    """A sleep that returns at once and remembers how long it was asked to wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
WORKSPACE = "7c759f10-1111-4222-8333-944455566677"
DCR = "dcr-" + "0" * 31 + "1"


def siem(kind: str, **keys: Any) -> SiemConfig[Any]:
    """A parsed `[siem]` table of `kind` with test endpoints; `keys` override or add keys."""
    raw: dict[str, Any] = {"type": kind, "backfill_rate": 0}
    if kind == "sentinel":
        raw.update(workspace_id=WORKSPACE, ingestion_endpoint="https://dce.test", dcr_immutable_id=DCR)
    elif kind == "splunk":
        raw.update(url="https://splunk.test:8089", token_env="FAKE_SIEM_TOKEN", hec_url="https://splunk.test:8088",
                   hec_token_env="FAKE_HEC_TOKEN")
    else:
        raw.update(url="https://es.test:9200", api_key_env="FAKE_SIEM_TOKEN")
    raw.update(keys)
    return siem_config.parse({k: v for k, v in raw.items() if v is not None}, tenants=(TENANT,))
