"""Alembic environment of the service store.

The store runs migrations itself (:func:`medsight.service.migrations.upgrade`) on a
connection it passes in ``config.attributes["connection"]``; without one (the ``alembic``
command line with ``-x url=...``) a connection is opened to that URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from medsight.service.models import Base

target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: batch mode copies the table
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Run the migrations on the store's connection, or on ``-x url=...``."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    with create_engine(url).connect() as conn:  # pragma: no cover - the alembic command line
        _run(conn)
        conn.commit()


if hasattr(context, "config"):  # run by alembic, not imported by a doctest collector
    main()
