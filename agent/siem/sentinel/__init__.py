"""Microsoft Sentinel: a Log Analytics workspace read through the query API and written through Logs Ingestion."""
