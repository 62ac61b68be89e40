"""Alembic migrations of the experiment store (`python -m experiments migrate`, `make migrate`)."""
