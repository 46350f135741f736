"""The command line: `main.py` is the parser, the dispatch and the one top-level error handler; each command
has its own module (collect, reconcile, triangulate, export, verify, status, check) sharing `common.py`;
`render.py` draws what a terminal shows (tables, progress), `next_steps.py` the advice a reconcile report
ends with; help topics and shell completion beside them.
"""
