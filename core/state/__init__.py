"""The state layer: one module per Redis record family.

Each module owns its keys, its codec (a frozen dataclass to and from bytes, tolerant of
older stored versions) and its operations. Nothing outside a record's module names its
key; `tests/test_architecture.py` keeps it so. Operations take a `Redis` that may be a
pipeline, so a batch keeps one read and one write round trip.
"""
