"""Alembic environment: run on the connection handed over by ``collabkit.serve.migrate``."""

from alembic import context

from collabkit.serve.store import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
