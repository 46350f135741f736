"""What every service shares at run time: the scenario, the data, key material, tokens, faults, quotas."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from emulator.microsoft.blobs import Blob
from emulator.microsoft.quota import SlidingWindow
from emulator.microsoft.tokens import TokenIssuer
from emulator.runtime.requestlog import RequestLog
from emulator.runtime.tls import Material
from emulator.siems.siem_copy import SiemCopy
from emulator.world.dataset import Dataset
from emulator.world.faults import FaultInjector
from emulator.world.scenario import Scenario


@dataclass
class State:
    scenario: Scenario
    origin: int  # the emulator's start instant (ticks); relative scenario times hang off it
    dataset: Dataset
    blobs: dict[tuple[str, str], list[Blob]]  # (tenant, stream) -> blobs in availability order
    material: Material
    tokens: TokenIssuer
    faults: FaultInjector
    graph_quota: SlidingWindow  # per (app, tenant)
    graph_app_quota: SlidingWindow  # per app across tenants
    management_quota: SlidingWindow
    siem: SiemCopy | None = None  # the primary SIEM's copy (truth minus [[siem.gaps]], plus its own noise)
    urls: dict[str, str] = field(default_factory=dict)  # service name -> base URL, filled once listening
    splunk_token: str = field(default_factory=lambda: secrets.token_hex(16))
    splunk_hec_token: str = field(default_factory=lambda: str(uuid.uuid4()))  # HEC tokens are GUIDs
    elastic_api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # service -> further base URLs it answers for as a token audience (--impersonate's other clouds)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    impersonated: dict[str, str] = field(default_factory=dict)  # --impersonate: host name -> service
    requests: RequestLog | None = None  # per-client request log, when enabled
    shared: dict[str, Any] = field(default_factory=dict)  # service objects two listeners share (query + ingest)
