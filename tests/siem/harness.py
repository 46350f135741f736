"""Start an emulated SIEM over HTTPS and the matching adapter, for the adapter and reconcile tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.config import HttpConfig
from agent.http import HttpClient
from agent.siem.base import Siem
from agent.siem.config import parse
from agent.siem.elastic.reader import ElasticSiem
from agent.siem.sentinel.reader import SentinelSiem
from agent.siem.splunk.reader import SplunkSiem
from emulator.siems import elastic as elastic_emu
from emulator.siems import loganalytics as la_emu
from emulator.siems import splunk as splunk_emu
from emulator.siems.siem_copy import SiemCopy
from tests.siem.fixtures import TENANT, WORKSPACE, make_tls, serve

KINDS = ("sentinel", "splunk", "elastic")
SPLUNK_TOKEN = "splunk-test-token-0001"
ELASTIC_KEY = "ZWxhc3RpYzp0ZXN0LWtleQ=="


def emulator_app(kind: str, copy: SiemCopy) -> web.Application:
    if kind == "sentinel":
        return la_emu.app(copy, token_ok=lambda t: t == "la-token")
    if kind == "splunk":
        return splunk_emu.app(copy, token=SPLUNK_TOKEN)
    return elastic_emu.app(copy, api_key=ELASTIC_KEY)


def siem_config(kind: str, url: str, **extra: Any) -> Any:
    raw: dict[str, Any] = {"type": kind, "max_attempts": 3, **extra}
    if kind == "sentinel":
        raw.update(workspace_id=WORKSPACE, endpoint=url)
    else:
        raw.update(url=url)
        raw["token_env" if kind == "splunk" else "api_key_env"] = "TEST_SIEM_SECRET"
        os.environ["TEST_SIEM_SECRET"] = SPLUNK_TOKEN if kind == "splunk" else ELASTIC_KEY
    return parse(raw, tenants=(TENANT,))


@dataclass
class Running:
    siem: Siem
    app: web.Application
    url: str


@asynccontextmanager
async def running(kind: str, copy: SiemCopy, tmp: Path, **extra: Any) -> AsyncIterator[Running]:
    tls = make_tls(tmp)
    app = emulator_app(kind, copy)
    async with serve(app, tls) as url, HttpClient(HttpConfig(ca_file=tls.ca_file,
                                                             timeout=timedelta(seconds=60))) as http:
        cfg = siem_config(kind, url, **extra)
        siem: Siem
        if kind == "sentinel":
            async def token() -> str:
                return "la-token"
            siem = SentinelSiem(cfg, http, token)
        elif kind == "splunk":
            siem = SplunkSiem(cfg, http, _static(SPLUNK_TOKEN))
        else:
            siem = ElasticSiem(cfg, http, _static(ELASTIC_KEY))
        try:
            yield Running(siem, app, url)
        finally:
            await siem.aclose()


def _static(value: str) -> Any:
    async def token() -> str:
        return value
    return token
