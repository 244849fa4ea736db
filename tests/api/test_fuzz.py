"""Property-based fuzzing of every documented operation: no input may produce a 5xx."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from sqlalchemy import update

from cityplus.core.identity.models import User

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("CITYPLUS_FUZZ_EXAMPLES", "25"))


def test_no_server_errors(ctx, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    """As a platform admin (the deepest reach), every generated request to every operation answers < 500."""
    from cityplus.api.app import create_app

    app = create_app(ctx=ctx)
    admin = make_user("platform_admin")

    def fresh_headers() -> dict[str, str]:
        # Generated requests may revoke this token, demote or deactivate the admin: start each one afresh.
        with ctx.db.session() as session:
            session.execute(update(User).where(User.id == admin.user_id)
                            .values(role="platform_admin", is_active=True))
        return token_for(admin)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    calls: Counter[int] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers=fresh_headers())
            calls[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                f"{response.text[:300]}\n  {case.as_curl_command()}")
            elif response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
                body = response.json()
                ckan = body.get("success") is False and isinstance(body.get("error"), dict)  # CKAN's own format
                if ckan and body["error"].get("__type") and body["error"].get("message"):
                    return
                if body.get("status") != response.status_code or not body.get("detail"):
                    failures.append(f"{case.method} {case.formatted_path}: error without problem body: {body}")

        run()
    assert operations > 15
    print(f"fuzz: {operations} operations, responses by class: {dict(calls)}")
    assert sum(calls.values()) >= operations * 5, calls  # the generator really exercised every operation
    assert calls[401] < sum(calls.values()) // 10, calls  # and got past authentication
    assert not failures, "\n".join(failures[:20])
