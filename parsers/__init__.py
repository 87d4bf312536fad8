"""Parsers: bytes of one delivered file -> a canonical Snapshot plus problems. No database here."""
