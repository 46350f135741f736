"""A stand-in for Microsoft's login, Graph and Management Activity services, driven by a scenario file.

It is the independent witness of every proof: it imports nothing from the rest of `agent`, and the
only thing it shares with the agent is the stream names of contract 1 (copied in `catalog.py`).
"""
