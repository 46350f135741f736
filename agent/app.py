"""The composition root: one `Runtime` owns the process's shared resources and closes them once.

The HTTP client (one aiohttp session for every API, SIEM and webhook), the store and the archive on
it, the token providers (one per tenant and resource, so msal's cache is shared) and the SIEM
adapter are opened here, each at most once, and closed in the reverse order by one
`AsyncExitStack`, even when one of the closes fails. Commands and the service take what they use
from the runtime and pass it down as parameters; nothing below builds its own session or store.

    async with Runtime.open(cfg) as rt:
        report = await reconcile(cfg, rt.archive, rt.siem, ...)

The store and the SIEM open on first use: `agent status` needs no SIEM, and a `[siem]` table that
cannot be opened fails where the SIEM is needed (a scheduled reconcile alerts it), not at start. A
command that never sends a request (`status`, `export`, `check` without --online) opens the runtime
with `http=False`: no HTTP client exists then, so nothing it calls can reach the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from agent.archive.archive import Archive
from agent.auth import TokenProvider, TokenProviders
from agent.config import Config, TenantConfig
from agent.http import HttpClient, Response
from agent.siem.base import Siem, Writer
from agent.siem.config import SiemConfig
from agent.siem.registry import from_config, open_siem, open_writer
from agent.store import open_store
from agent.store.base import Store

Observe = Callable[[tuple[str, str], Response], None]


class Runtime:
    """The process's shared resources; build it with `Runtime.open`, never directly."""

    def __init__(self, cfg: Config, stack: AsyncExitStack, http: HttpClient | None) -> None:
        self.cfg = cfg
        self._http = http
        self._stack = stack
        self._store: Store | None = None
        self._archive: Archive | None = None
        self._siem: Siem | None = None
        self._siem_cfg: SiemConfig[Any] | None = None
        self._writer: Writer | None = None
        self._tokens = TokenProviders(cfg.http)

    @classmethod
    @asynccontextmanager
    async def open(cls, cfg: Config, *, observe: Observe | None = None, http: bool = True) -> AsyncIterator[Runtime]:
        """Open the HTTP client now (unless `http` is False), the rest on first use; close everything
        opened on the way out.

        `observe` sees every HTTP response (the service's request and throttling metrics). `cfg` is
        the whole configuration: the `[siem]` tenant is resolved against every tenant, so a
        sharded service passes its unsharded config here."""
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(HttpClient(cfg.http, observe=observe)) if http else None
            yield cls(cfg, stack, client)

    @property
    def http(self) -> HttpClient:
        """The one HTTP client; asking for it in a runtime opened with `http=False` is a bug."""
        if self._http is None:
            raise RuntimeError("this Runtime was opened without an HTTP client (http=False)")
        return self._http

    @property
    def store(self) -> Store:
        """The configured store (`[store]`), opened on first use and closed with the runtime."""
        if self._store is None:
            store = open_store(self.cfg.store)
            self._stack.push_async_callback(store.aclose)
            self._store = store
        return self._store

    @property
    def archive(self) -> Archive:
        """The archive on `store`; it holds nothing to close of its own."""
        if self._archive is None:
            self._archive = Archive(self.store)
        return self._archive

    def tokens(self, tenant: TenantConfig, resource: str | None = None) -> TokenProvider:
        """The token provider of `tenant` for `resource` (Graph by default), one per pair: msal's
        token cache lives in it, so every caller of a pair shares one token."""
        return self._tokens(tenant, resource or tenant.endpoints.graph)

    @property
    def siem_config(self) -> SiemConfig[Any] | None:
        """The parsed `[siem]` table, or None when no SIEM is configured (raises ConfigError when invalid)."""
        if self._siem_cfg is None and self.cfg.siem is not None:
            self._siem_cfg = from_config(self.cfg)
        return self._siem_cfg

    @property
    def siem(self) -> Siem | None:
        """The SIEM adapter on the shared HTTP client, opened on first use; None without `[siem]`.

        An adapter that cannot be built raises (ConfigError) at each use, and nothing is cached."""
        if self._siem is None:
            siem_cfg = self.siem_config
            if siem_cfg is None:
                return None
            siem = open_siem(siem_cfg, self.cfg, self.http, self.tokens)
            self._stack.push_async_callback(siem.aclose)
            self._siem = siem
        return self._siem

    @property
    def writer(self) -> Writer:
        """The `[siem]` backfill writer on the shared HTTP client, built on first use (it holds nothing to
        close). Raises ConfigError, and keeps nothing, when there is no `[siem]` or its write keys are
        missing: a command asks for it before its first query, so that is a config error, not a late failure."""
        if self._writer is None:
            self._writer = open_writer(from_config(self.cfg), self.cfg, self.http, self.tokens)
        return self._writer
