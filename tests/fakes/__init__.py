"""Fake vendor servers (real HTTP on loopback) for the connector tests and the benchmark."""
