"""Emulated Microsoft services: login, Graph, the Management Activity API, the audit log query API."""
