"""The long-running service: the supervisor and its loops, health and readiness, silence detection, alerts,
metrics and the status view.
"""
