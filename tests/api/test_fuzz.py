"""Property-based fuzzing of every documented operation: no input may produce a 5xx."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("CITYPLUS_FUZZ_EXAMPLES", "30"))


@pytest.fixture
def fuzz_app(ctx, make_user, token_for):  # type: ignore[no-untyped-def]
    from cityplus.api.app import create_app

    app = create_app(ctx=ctx)
    app.state.fuzz_headers = token_for(make_user("platform_admin"))
    return app


@pytest.fixture
def api_schema(fuzz_app):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, fuzz_app) -> None:  # type: ignore[no-untyped-def]
    """Authenticated as a platform admin (deepest reach), every generated request answers < 500."""
    response = case.call(headers=fuzz_app.state.fuzz_headers)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}\n"
        f"{case.as_curl_command()}"
    )
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/"):
        body = response.json()
        assert body.get("status") == response.status_code and body.get("detail"), body
