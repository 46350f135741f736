"""Emulated primary SIEMs: Log Analytics (Sentinel) with KQL and Logs Ingestion, Splunk, Elasticsearch."""
