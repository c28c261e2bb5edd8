"""Store fixtures: every store test runs on SQLite (a temporary file) and on PostgreSQL.

PostgreSQL is the real server at 127.0.0.1:5432, database ``test`` (``.ci/run`` starts it);
each test gets its own schema, dropped afterwards, so parallel runs never collide.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from levalign.engine.store import Store

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_or_skip() -> None:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not available"
        pytest.skip(
            f"PostgreSQL at 127.0.0.1:5432 (database test, user postgres) is unreachable "
            f"({type(exc).__name__}); start it (.ci/run does) to run the PostgreSQL store tests"
        )


def pg_schema_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    _pg_or_skip()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    schema = request.getfixturevalue("pg_schema")
    return pg_schema_url(schema)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    s.upgrade()
    try:
        yield s
    finally:
        s.close()


def followers(n: int, *, equity: float = 1000.0) -> list[dict[str, object]]:
    return [
        {
            "id": f"f{i}",
            "address": f"0x{i:040x}",
            "credentials_ref": f"env:FOLLOWER_{i}_KEY",
            "equity": equity,
            "scale": 1.0,
        }
        for i in range(n)
    ]
