"""Elasticsearch: a cluster read with point in time + search_after, written with `_bulk` create."""
