"""Alembic revisions of the service store, oldest first (``0001_baseline`` ...)."""
