"""A stand-in for Microsoft's login, Graph and Management Activity services and for the primary
SIEMs (Log Analytics, Splunk, Elasticsearch), driven by a scenario file, plus the audit of any
collector run against it (`agent audit-collector`).

A package of its own beside `agent`, shipped in the same distribution: it is the independent
witness of every proof, so it imports nothing from `agent` (tests/emulator/test_independence.py
checks every file and every import form), and nothing in `agent` imports it except the command
line forwarding `agent emulator` and `agent audit-collector` here. The only thing it shares with
the agent is the stream names, copied in `world/catalog.py`.

Subpackages: `world/` (scenario, records, clock, faults, ground truth), `microsoft/` (the
emulated Microsoft APIs), `siems/` (the emulated SIEMs), `runtime/` (server, TLS, request log,
sandbox), `audit/` (the collector audit); `cli.py` is `agent emulator`.
"""
