"""Deterministic, realistic records for every stream, in the shapes Microsoft serves.

Each generator takes a seeded `random.Random`, the event time in ticks and the tenant id, so a
scenario seed fixes every id and value. Graph shapes live in `graph_records.py`, Management
Activity shapes in `audit_records.py`.
"""

from __future__ import annotations

from emulator.world.audit_records import aad, dlp, exchange, general, sharepoint
from emulator.world.graph_records import directory_audit, provisioning, signin
from emulator.world.vocabulary import Generator, Record

__all__ = ["GENERATORS", "Generator", "Record"]

GENERATORS: dict[str, Generator] = {
    "graph.signins.interactive": signin("interactiveUser"),
    "graph.signins.noninteractive": signin("nonInteractiveUser"),
    "graph.signins.serviceprincipal": signin("servicePrincipal"),
    "graph.signins.managedidentity": signin("managedIdentity"),
    "graph.directory_audits": directory_audit,
    "graph.provisioning": provisioning,
    "o365.azure_active_directory": aad,
    "o365.exchange": exchange,
    "o365.sharepoint": sharepoint,
    "o365.general": general,
    "o365.dlp_all": dlp,
}
