"""Shared start-up for the benchmarks: a PostgreSQL database of their own, Django, migrations.

Benchmarks measure the production shape, so they refuse SQLite.
"""

import os
import sys
from urllib.parse import urlparse


def setup_postgres(db_url: str, **env: str) -> None:
    """Create the database named by ``db_url`` if missing, point Django at it and migrate.

    ``env`` sets extra environment variables before the settings are read.
    """
    if not db_url.startswith(("postgres://", "postgresql://")):
        sys.exit(f"benchmarks run on PostgreSQL; got {db_url!r}")
    create_database(db_url)
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ordermanager.settings.base")
    os.environ.setdefault("LOG_LEVEL", "warning")
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def create_database(db_url: str) -> None:
    import psycopg

    parsed = urlparse(db_url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
