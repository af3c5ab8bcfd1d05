"""The web process: Graph notifications in, health and metrics out.

Thin: verify, hand off, answer.
"""
