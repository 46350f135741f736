"""The Office 365 Management Activity API source: its client, content-blob ledger and window grid."""
