"""PBX adapters: one small Protocol (base.py), one module per kind of PBX."""
