"""Deep history: records older than the live APIs keep, read through the audit log query API."""
