"""Splunk: a search head read through the search export, written through the HTTP Event Collector."""
