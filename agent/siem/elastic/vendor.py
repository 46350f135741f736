"""Elasticsearch as the registry sees it: what builds its reader, writer and anchor from the parsed config.

One API key (`siem.api_key`) reads the indices and `_bulk`-writes backfill and chain heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import orjson

from agent.auth import Tokens
from agent.config import Config
from agent.http import HttpClient
from agent.logs import register_secret
from agent.siem.anchor import HeadSink, MakeHead
from agent.siem.base import Siem, Target
from agent.siem.elastic import config
from agent.siem.elastic.config import ElasticConfig
from agent.siem.elastic.reader import ElasticSiem, base_query
from agent.siem.elastic.writer import ElasticWriter
from agent.siem.keys import SiemConfig
from agent.sources.base import Window


class ElasticVendor:
    """Elasticsearch: point in time + `search_after` to read, `_bulk` create to write."""

    name: ClassVar[str] = config.NAME

    def open_reader(self, cfg: SiemConfig[ElasticConfig], agent_cfg: Config, http: HttpClient, tokens: Tokens) -> Siem:
        secret = register_secret(cfg.vendor.api_key.reveal())

        async def api_key() -> str:
            return secret

        return ElasticSiem(cfg, http, api_key)

    def open_writer(self, cfg: SiemConfig[ElasticConfig], agent_cfg: Config, http: HttpClient,
                    tokens: Tokens) -> ElasticWriter:
        return ElasticWriter(cfg, http, register_secret(cfg.vendor.api_key.reveal()))

    def open_anchor(self, cfg: SiemConfig[ElasticConfig], agent_cfg: Config, http: HttpClient, tokens: Tokens,
                    index: str, make_head: MakeHead) -> HeadSink:
        from agent.siem.elastic.anchor import ElasticAnchor

        secret = register_secret(cfg.vendor.api_key.reveal())
        return ElasticAnchor(cfg, http, secret, index or ElasticConfig.anchor_default, make_head)

    def missing_query(self, cfg: SiemConfig[ElasticConfig], target: Target, tenant: str, window: Window,
                      ids: Sequence[str]) -> tuple[str, str]:
        """(where the stream lives, a `_search` request returning which of `ids` the cluster holds)."""
        query = base_query(target, tenant, window)
        query["bool"]["filter"].append({"terms": {target.id_field: list(ids)}})
        body = orjson.dumps({"_source": False, "fields": [target.id_field], "query": query}).decode()
        return f"Elasticsearch index {target.source}", f"GET /{target.source}/_search {body}"

    async def check_write(self, cfg: SiemConfig[ElasticConfig], agent_cfg: Config, http: HttpClient,
                          tokens: Tokens) -> str:
        """`check --online`: nothing more; the reader's key is the writer's."""
        return ""


VENDOR = ElasticVendor()
