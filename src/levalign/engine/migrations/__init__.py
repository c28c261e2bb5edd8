"""Alembic migrations of the store (run by ``levalign db upgrade``; no alembic.ini needed)."""
