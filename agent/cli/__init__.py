"""The command line: parser and dispatch, one place for rendering (tables, progress), help topics and shell
completion.
"""
