"""One mapping of store refusals to HTTP (gateway/errors.py ``Refused``, the handler in
gateway/api/main.py): the class decides the status, and every route gets it the same way."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from gateway.api.main import create_app
from gateway.errors import Conflict, Invalid, MugaiError, NotAllowed, NotFound, Refused
from gateway.relay import SmtpRelay
from gateway.store.repository import Store
from gateway.store.unlocks import RateLimited
from tests.api.conftest import Api, mini_gateway
from tests.store.backends import pg_database, store, store_url  # noqa: F401 - fixtures

ROUTES = Path(__file__).parents[2] / "gateway" / "api" / "routes"


@pytest.fixture
async def app_client(
    tmp_path: Path,
    store: Store,  # noqa: F811
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    gw = mini_gateway(tmp_path, store, SmtpRelay("127.0.0.1:1", hostname="t", timeout=1))
    app = create_app(gw)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield app, client


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (NotFound("no_such_message"), 404),
        (Conflict("already_released"), 409),
        (NotAllowed("own_request"), 403),
        (Invalid("category_required"), 422),
        (Refused("refused"), 400),
        (RateLimited(120), 429),
    ],
)
async def test_the_class_decides_the_status(
    app_client: tuple[FastAPI, httpx.AsyncClient], exc: Refused, status: int
) -> None:
    app, client = app_client

    async def raising() -> None:
        raise exc

    # Mounted without a token check: the auth middleware guards /api/ paths only.
    app.add_api_route("/t/raise", raising)
    r = await client.get("/t/raise")
    assert r.status_code == status
    assert r.json()["detail"] == exc.reason
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    if isinstance(exc, RateLimited):
        assert r.headers["Retry-After"] == "120" and r.json()["retry_after"] == 120


def test_a_refusal_is_not_a_job_outcome() -> None:
    # The pipeline's ``except MugaiError`` must never turn a refusal into a quarantine.
    assert not issubclass(Refused, MugaiError)


async def test_a_real_refusal_through_a_route(api: Api) -> None:
    r = await api.client.put(
        "/api/v1/messages/20261203-0000-nosuchid/legal-hold", headers=api.auth("admin"),
        json={"hold": True},
    )  # fmt: skip
    assert r.status_code == 404, r.text
    assert set(r.json()) == {"detail"} and r.json()["detail"] != "Not Found"


def test_no_route_maps_refusals_by_hand() -> None:
    names = {"Refused", "NotFound", "NotAllowed", "Invalid", "Conflict", "RateLimited"}
    found = []
    for path in sorted(ROUTES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                caught = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
                if caught & names:
                    found.append(f"{path.name}:{node.lineno}")
    # The one exception: a release request blocked by an open one names that request.
    assert found == [f"releases.py:{_conflict_line()}"], found


def _conflict_line() -> int:
    src = (ROUTES / "releases.py").read_text().splitlines()
    return next(i for i, line in enumerate(src, 1) if "except Conflict as exc:" in line)
