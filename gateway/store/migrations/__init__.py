"""Alembic migrations of the journal: the only way its schema is created or changed."""
