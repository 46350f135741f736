"""Triangulation: what Microsoft's own counts and sibling pipelines witness about records lost before any API
served them.
"""
