"""Record-level reconciliation of the archive against the primary SIEM.

Library use (the demo, other tools)::

    from agent.reconcile import Options, reconcile
    report = await reconcile(cfg, archive, siem, [(tenant_id, stream)], since, until)
    report.has_gaps, report.to_json(), to_markdown(report), to_html(report)
"""

from agent.reconcile.engine import Options, options_from, reconcile
from agent.reconcile.html import to_html
from agent.reconcile.report import ReconcileReport, StreamReport, to_markdown

__all__ = ["Options", "ReconcileReport", "StreamReport", "options_from", "reconcile", "to_html", "to_markdown"]
