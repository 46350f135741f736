"""The archive is queryable as is (contract 2): DuckDB reads the zstd NDJSON segments with hive
partitions, from local disk and from S3 (httpfs from the pinned PyPI wheel, no network download).
The queries are the ones docs/querying.md shows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.archive.archive import Archive
from agent.store.base import Store
from agent.store.local import LocalStore
from agent.store.s3 import S3Store
from tests.store.servers import ACCESS_KEY, REGION, SECRET_KEY, new_bucket, store_config

duckdb = pytest.importorskip("duckdb")

T = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
BASE = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
SIGNIN_COLUMNS = ("{'id': 'VARCHAR', 'createdDateTime': 'TIMESTAMPTZ', 'userPrincipalName': 'VARCHAR', "
                  "'appDisplayName': 'VARCHAR', 'ipAddress': 'VARCHAR', "
                  "'status': 'STRUCT(errorCode BIGINT, failureReason VARCHAR)'}")
GLOB = "tenant=*/stream=graph.signins.*/date=*/hour=*/*.ndjson.zst"


def signin(i: int) -> dict[str, Any]:
    when = BASE + timedelta(minutes=7 * i)
    return {"id": f"a1b2c3d4-0000-4000-8000-{i:012d}", "createdDateTime": when.strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
            "userPrincipalName": f"user{i % 7}@contoso.com", "appDisplayName": "Office 365",
            "ipAddress": f"203.0.113.{i % 250}", "riskEventTypes_v2": [],
            "status": {"errorCode": 50126 if i % 5 == 0 else 0, "failureReason": None,
                       "additionalDetails": "x"}}


async def write_archive(store: Store) -> int:
    """40 interactive and 25 non-interactive sign-ins spread over several hours."""
    archive = Archive(store)
    a = await archive.write(T, "graph.signins.interactive", [signin(i) for i in range(40)])
    b = await archive.write(T, "graph.signins.noninteractive", [signin(100 + i) for i in range(25)])
    return a.stored + b.stored


def read_json(root: str) -> str:
    return (f"read_json('{root}/{GLOB}', format='newline_delimited', compression='zstd', "
            "hive_partitioning=true, hive_types={'tenant': 'VARCHAR', 'stream': 'VARCHAR', "
            f"'date': 'DATE', 'hour': 'INTEGER'}}, columns={SIGNIN_COLUMNS})")


def assert_queries(con: Any, src: str, written: int) -> None:
    con.sql(f"CREATE VIEW signins AS SELECT * FROM {src}")  # noqa: S608 - our own test paths
    assert con.sql("SELECT count(*), count(DISTINCT id) FROM signins").fetchone() == (written, written)
    by_stream = con.sql("SELECT stream, count(*) FROM signins GROUP BY 1 ORDER BY 1").fetchall()
    assert by_stream == [("graph.signins.interactive", 40), ("graph.signins.noninteractive", 25)]
    hour9 = con.sql("SELECT count(*) FROM signins WHERE date = DATE '2026-11-01' AND hour = 9 "
                    "AND stream = 'graph.signins.interactive'").fetchone()
    assert hour9 == (9,)  # minutes 0..56 in steps of 7
    failures = con.sql("SELECT count(*) FROM signins WHERE status.errorCode = 50126").fetchone()
    assert failures == (8 + 5,)
    tenants = con.sql("SELECT DISTINCT tenant FROM signins").fetchall()
    assert tenants == [(T,)]


async def test_duckdb_reads_local_archive(tmp_path: Path) -> None:
    written = await write_archive(LocalStore(tmp_path))
    con = duckdb.connect()
    assert_queries(con, read_json(str(tmp_path)), written)


@pytest.mark.s3
async def test_duckdb_reads_s3_archive(seaweed: Any) -> None:
    bucket = new_bucket(seaweed.client)
    store = S3Store(store_config(seaweed.endpoint, bucket, prefix="archive"))
    written = await write_archive(store)
    await store.aclose()
    from duckdb_extensions import import_extension

    con = duckdb.connect(config={"autoinstall_known_extensions": "false"})
    import_extension("httpfs", con=con)
    con.sql("LOAD httpfs")
    host = seaweed.endpoint.removeprefix("http://")
    con.sql(f"CREATE SECRET archive (TYPE s3, KEY_ID '{ACCESS_KEY}', SECRET '{SECRET_KEY}', REGION '{REGION}', "
            f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)")
    assert_queries(con, read_json(f"s3://{bucket}/archive"), written)
