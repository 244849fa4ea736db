"""Property-based fuzzing of the supervision API as the plan office and as a lead unit: no input gives a 5xx, and
every error is a problem body. (tests/api/test_fuzz.py fuzzes every operation as a platform admin, whom the
supervision service turns away before it reads the body.)"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from cityplus.core.audit import Actor
from cityplus.modules.plan import service
from cityplus.modules.plan.schemas import ItemCreate

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("CITYPLUS_FUZZ_EXAMPLES", "25"))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_no_server_errors_in_supervision(ctx, make_user, token_for) -> None:  # type: ignore[no-untyped-def]
    from cityplus.api.app import create_app

    app = create_app(ctx=ctx)
    with ctx.db.session() as s:  # something to find: item 1 (lead jxw), acknowledged, with a KPI
        office = Actor("office", org_code="fgw", role="department_staff")
        item = service.create_item(s, office, ItemCreate(task=21, title="x", lead_org="jxw", due_date="2016-10-08",
                                                         kpis=[{"name": "k", "target": 10}]))
        assert item.id == 1
    headers = {"office": token_for(make_user("department_staff", org="fgw")),
               "lead": token_for(make_user("department_staff", org="jxw"))}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    calls: Counter[int] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if "plan supervision" not in (operation.definition.raw.get("tags") or []):
            continue
        operations += 1
        for who in ("office", "lead"):
            _fuzz(operation, headers[who], calls, failures)
    assert operations >= 20
    print(f"fuzz: {operations} supervision operations, responses by class: {dict(calls)}")
    assert calls[401] == 0 and sum(calls.values()) >= operations * 5, calls
    assert not failures, "\n".join(failures[:20])


def _fuzz(operation, caller: dict[str, str], calls: Counter[int], failures: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Run the generated cases of one operation as one caller."""

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:  # type: ignore[no-untyped-def]
        response = case.call(headers=caller)
        calls[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                            f"{response.text[:300]}\n  {case.as_curl_command()}")
        elif response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
            body = response.json()
            if body.get("status") != response.status_code or not body.get("detail"):
                failures.append(f"{case.method} {case.formatted_path}: no problem body: {body}")

    run()
