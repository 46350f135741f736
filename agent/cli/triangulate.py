"""`agent triangulate`: Microsoft's sibling pipelines compared in the archive, and Entra's summarized
sign-ins as a count witness. Exit 3 when one lacks what another has, 1 when some pair judged no hour."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent import config
from agent.cli.common import EXIT_FAILURE, EXIT_GAPS, EXIT_OK, emit, load, select
from agent.errors import AgentError, ConfigError

if TYPE_CHECKING:
    from agent.app import Runtime


async def cmd_triangulate(args: argparse.Namespace) -> int:
    from agent.app import Runtime
    from agent.cli.render import triangulate_text
    from agent.triangulate.engine import CONTEXT, pairs_for, triangulate
    from agent.triangulate.report import to_html, to_markdown

    cfg = select(load(args.config), args.tenant)
    from agent.triangulate.witness import witnessed

    tenants = [(t.id, t.streams) for t in cfg.tenants]
    if not any(pairs_for(streams, args.stream) or witnessed(list(streams), args.stream) for _, streams in tenants):
        raise ConfigError("no tenant collects a pair of sibling streams or a witnessed stream"
                          + (" in --stream" if args.stream else "")
                          + " (graph.directory_audits or graph.signins.interactive with o365.azure_active_directory;"
                          + " graph.signins.noninteractive, .serviceprincipal or .managedidentity)")
    until = args.until or datetime.now(UTC)
    since = args.since or until - CONTEXT
    if since >= until:
        raise ConfigError("--since must be before --until")
    async with Runtime.open(cfg) as rt:
        report = await triangulate(rt.archive, tenants, since, until, args.stream)
        report.pairs += await _witness_pairs(rt, args.stream, since, until)
    render = {"json": lambda r: r.to_json().decode() + "\n", "md": to_markdown, "html": to_html,
              "text": triangulate_text}
    emit(render[args.format](report).encode(), args.out)
    if report.has_gaps:
        return EXIT_GAPS
    if not report.complete:
        print("agent: triangulate could not judge any hour of some pair (not collected or not settled)",
              file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


async def _witness_pairs(rt: Runtime, streams: list[str] | None, since: datetime, until: datetime) -> list[Any]:
    """The count witness (agent/triangulate/witness.py) of every witnessed stream a tenant collects; a summary
    that cannot be read leaves its pair unjudged (exit 1), never "all good"."""
    from agent.triangulate.witness import witness_pairs

    def unread(tenant: config.TenantConfig, stream: str, exc: AgentError) -> None:
        print(f"agent: {tenant.label}/{stream}: the summarized sign-ins could not be read: {exc}", file=sys.stderr)

    return list(await witness_pairs(rt.archive, rt.http, rt.cfg.tenants, lambda t: (rt.tokens(t), None),
                                    streams, since, until, datetime.now(UTC), unread))
