"""The FastAPI + asyncpg reference of the benchmark: the stack Python users pick for speed,
doing our users API's job on one database (bench code, never deployed).

    .venv/bin/uvicorn bench.fastapi_ref:app --workers 2 --loop uvloop --http httptools

uvicorn with uvloop and httptools, one asyncpg pool per worker, through the shard-0 PgBouncer
(transaction pooling) into its own table, `bench_fastapi_users`: no sharding, no replicas,
no consistency token, no email lookup table. `bench/run.py` creates and seeds the table
(`prepare`), starts the server (`FastApiServer`) and measures it beside ours.

- GET /users/{id}: one primary-key SELECT; 404 when there is no such user.
- POST /users/: one INSERT; the unique index on lower(email) answers 409 for a taken email.
- GET /users/?limit=20[&cursor=...]: a keyset page, newest first, from the
  (created_at desc, id desc) index, with a `next` link when there are more rows.

The JSON is our API's: the user's five fields, `{"results", "next"}` pages with the same
opaque cursor, `{"error", "code"}` errors. Responses go through Pydantic return types, which
FastAPI serializes in Rust (its documented fast path).
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from users.pagination import Cursor, InvalidCursor

DSN = os.environ.get("BENCH_FASTAPI_DSN", "postgresql://postgres@127.0.0.1:6430/messenger")
POOL_SIZE = int(os.environ.get("BENCH_FASTAPI_POOL", "20"))  # per worker, like DB_POOL_SIZE
TABLE = "bench_fastapi_users"
COLUMNS = "id, name, email, created_at, updated_at"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id uuid PRIMARY KEY,
    name varchar(200) NOT NULL,
    email varchar(254) NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_email_key ON {TABLE} (lower(email));
CREATE INDEX IF NOT EXISTS {TABLE}_created_at_id ON {TABLE} (created_at DESC, id DESC);
"""
SELECT_ONE = f"SELECT {COLUMNS} FROM {TABLE} WHERE id = $1"
INSERT = f"INSERT INTO {TABLE} ({COLUMNS}) VALUES ($1, $2, $3, $4, $4)"
FIRST_PAGE = f"SELECT {COLUMNS} FROM {TABLE} ORDER BY created_at DESC, id DESC LIMIT $1"
NEXT_PAGE = (
    f"SELECT {COLUMNS} FROM {TABLE} WHERE (created_at, id) < ($1, $2)"
    " ORDER BY created_at DESC, id DESC LIMIT $3"
)


async def connect_pool(**kwargs) -> asyncpg.Pool:
    # PgBouncer in transaction mode may hand each statement another server connection, so
    # a statement prepared on one is unknown on the next: asyncpg must not cache them.
    return await asyncpg.create_pool(DSN, statement_cache_size=0, **kwargs)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await connect_pool(min_size=4, max_size=POOL_SIZE)
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class UserOut(BaseModel):
    id: uuid.UUID
    name: str
    email: str
    created_at: datetime
    updated_at: datetime


class Page(BaseModel):
    results: list[UserOut]
    next: str | None


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status)


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: str, request: Request):
    try:
        key = uuid.UUID(user_id)
    except ValueError:
        return _error(404, "user not found", "not_found")
    row = await request.app.state.pool.fetchrow(SELECT_ONE, key)
    if row is None:
        return _error(404, "user not found", "not_found")
    return UserOut(**row)


@app.post("/users/", response_model=UserOut, status_code=201)
async def create_user(user: UserIn, request: Request):
    user_id, now = uuid.uuid4(), datetime.now(UTC)
    try:
        await request.app.state.pool.execute(INSERT, user_id, user.name, user.email, now)
    except asyncpg.UniqueViolationError:
        return _error(409, "a user with this email already exists", "email_taken")
    return UserOut(id=user_id, name=user.name, email=user.email, created_at=now, updated_at=now)


@app.get("/users/", response_model=Page)
async def list_users(
    request: Request, limit: int = Query(20, ge=1, le=100), cursor: str | None = None
):
    pool = request.app.state.pool
    if cursor is None:
        rows = await pool.fetch(FIRST_PAGE, limit + 1)
    else:
        try:
            after = Cursor.decode(cursor)
        except InvalidCursor:
            return _error(400, "invalid cursor", "invalid")
        rows = await pool.fetch(NEXT_PAGE, after.created_at, after.id, limit + 1)
    next_url = None
    if len(rows) > limit:
        last = rows[limit - 1]
        token = Cursor(last["created_at"], last["id"]).encode()
        next_url = str(request.url.replace_query_params(cursor=token, limit=limit))
    return Page(results=[UserOut(**row) for row in rows[:limit]], next=next_url)


# --- the table, for bench/run.py ---------------------------------------------------------------
_SEED_BATCH = 100_000


async def _prepare(rows: int, sample: int) -> tuple[int, list[str]]:
    conn = await asyncpg.connect(DSN, statement_cache_size=0)
    try:
        await conn.execute(SCHEMA)
        have = await conn.fetchval(f"SELECT count(*) FROM {TABLE} WHERE email LIKE 'seed-%'")
        if have < rows:
            while have < rows:
                # Batches: each INSERT must end within the servers' statement_timeout.
                batch = min(rows - have, _SEED_BATCH)
                # Spread over the last days like seed_users' users, one second apart.
                await conn.execute(
                    f"INSERT INTO {TABLE} ({COLUMNS})"
                    " SELECT gen_random_uuid(), 'Seed User ' || n, 'seed-' || n || '-' || $2"
                    " || '@example.com', t, t FROM generate_series(1, $1) AS n,"
                    " LATERAL (SELECT now() - n * interval '1 second') AS c(t)",
                    batch,
                    uuid.uuid4().hex[:8],
                )
                have += batch
            await conn.execute(f"VACUUM ANALYZE {TABLE}")
        count = await conn.fetchval(f"SELECT count(*) FROM {TABLE}")
        ids = await conn.fetch(
            f"SELECT id FROM {TABLE} WHERE email LIKE 'seed-%' ORDER BY random() LIMIT $1",
            sample,
        )
        return count, [str(r["id"]) for r in ids]
    finally:
        await conn.close()


def prepare(rows: int, sample: int) -> tuple[int, list[str]]:
    """Create the table and its indexes when missing, seed it up to `rows` seeded users;
    returns its row count and `sample` random seeded ids for the GET target."""
    return asyncio.run(_prepare(rows, sample))


async def _delete(prefix: str) -> int:
    conn = await asyncpg.connect(DSN, statement_cache_size=0)
    try:
        status = await conn.execute(f"DELETE FROM {TABLE} WHERE email LIKE $1", f"{prefix}-%")
        return int(status.split()[-1])
    finally:
        await conn.close()


def delete_users(prefix: str) -> int:
    """Remove the rows whose email starts with `prefix-` (what the POST target created)."""
    return asyncio.run(_delete(prefix))
