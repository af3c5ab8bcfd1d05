"""A stand-in for an Asterisk Manager Interface, built from traffic recorded on a real Asterisk 20.

Tests and benchmarks replay the recorded calls through it; no Asterisk runs here.
"""
