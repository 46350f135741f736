"""The primary SIEM: one folder per vendor (`sentinel/`, `splunk/`, `elastic/`), each with its
`[siem]` keys (`config.py`), query side (`reader.py`), backfill side (`writer.py`), row shapes
(`rows.py`) and chain-head anchor (`anchor.py`); `registry.py` maps `[siem] type` to the vendor.

Shared: `base.py` (the Siem and Writer protocols), `targets.py` (where a stream lives, query-value
checks), `transport.py` (HTTP: retries, pacing), `keys.py` (the keys every vendor has; `config.py`
parses `[siem]` through the vendor at load), `rows.py`, `anchor.py`.
"""
