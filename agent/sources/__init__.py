"""Sources: where records come from (Microsoft Graph, Office 365 Management Activity API)."""
