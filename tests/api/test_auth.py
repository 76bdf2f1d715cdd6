from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from gateway.api.main import create_app
from tests.api.conftest import Api

ID = "0190000000000000000001"


def api_routes(api: Api) -> list[tuple[str, str]]:
    schema = create_app(api.gw).openapi()  # type: ignore[arg-type]
    out = []
    for template, operations in schema["paths"].items():
        if template.startswith("/api/"):
            path = re.sub(r"\{token_id\}", "1", template)
            path = re.sub(r"\{[^}]+\}", ID, path)
            out += [(m.upper(), path) for m in operations]
    return out


async def test_every_api_route_needs_a_valid_token(api: Api) -> None:
    routes = api_routes(api)
    assert len(routes) >= 12
    revoked = api.gw.store.create_token("gone", "admin", "test")[0]
    api.gw.store.revoke_tokens("gone", "test")
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer mgt_wrong"},
        {"Authorization": f"Basic {api.tokens['admin']}"},
        {"Authorization": f"Bearer {revoked}"},
        {"Authorization": "Bearer " + "x" * 5000},
    ]
    for method, path in routes:
        for headers in bad_headers:
            # Even a malformed body or id must not get past authentication.
            r = await api.client.request(method, path, headers=headers, content=b"{bad json")
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"


ALLOWED: dict[tuple[str, str], set[str]] = {
    ("GET", "/api/v1/messages"): {"viewer", "operator", "approver", "auditor", "admin"},
    ("GET", "/api/v1/messages/{id}"): {"viewer", "operator", "approver", "auditor", "admin"},
    ("GET", "/api/v1/messages/{id}/sanitized"): {
        "viewer",
        "operator",
        "approver",
        "auditor",
        "admin",
    },
    ("GET", "/api/v1/messages/{id}/original"): {"operator", "approver", "admin"},
    ("POST", "/api/v1/messages/{id}/release-requests"): {"operator", "approver", "admin"},
    ("DELETE", "/api/v1/messages/{id}"): {"admin"},
    ("PUT", "/api/v1/messages/{id}/legal-hold"): {"admin"},
    ("GET", "/api/v1/audit"): {"auditor", "admin"},
    ("GET", "/api/v1/tokens"): {"admin"},
    ("GET", "/api/v1/files/{id}"): {"operator", "approver", "admin"},
    ("GET", "/api/v1/files/{id}/sanitized"): {"operator", "approver", "admin"},
}


@pytest.mark.parametrize("role", ["viewer", "operator", "approver", "auditor", "admin"])
async def test_role_matrix(api: Api, seed: Callable[..., str], role: str) -> None:
    bodies = {
        "release-requests": {"reason": "r", "category": "other"},
        "legal-hold": {"hold": False},
    }
    for (method, template), roles in ALLOWED.items():
        mid = seed(status="quarantined")  # fresh, so a delete does not disturb the next call
        path = template.replace("{id}", mid)
        body = next((b for k, b in bodies.items() if path.endswith(k)), None)
        r = await api.client.request(method, path, headers=api.auth(role), json=body)
        if role in roles:
            assert r.status_code < 400 or r.status_code == 404, (role, method, path, r.text)
        else:
            assert r.status_code == 403, (role, method, path, r.status_code)


async def test_decisions_need_the_approver_role(api: Api, seed: Callable[..., str]) -> None:
    mid = seed(status="quarantined")
    rid = (
        await api.post(
            f"/api/v1/messages/{mid}/release-requests",
            "admin",
            json={"reason": "r", "category": "other"},
        )
    ).json()["id"]
    for role in ("viewer", "operator", "auditor"):
        for action in ("approve", "reject"):
            r = await api.post(f"/api/v1/release-requests/{rid}/{action}", role)
            assert r.status_code == 403
