"""Alembic migrations, applied on start-up by ``gateway.store.migrate``."""
