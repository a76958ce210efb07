"""Issue 8, Deliver 6: a bounded schemathesis run against the served OpenAPI: no response is >= 500.

Every operation of ``/openapi/v2`` (the whole API in one document) is fuzzed with schemathesis'
generated cases, with the admin token, in rounds so that each operation gets cases before any gets
more, until the time budget (:data:`BUDGET`) is spent. Nothing is excluded. Watches (``watch=true``
with a long ``timeoutSeconds``) are streams that do not end by themselves: a read timeout on one is
expected, and counts as answered, since its status line (checked) came first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from limits_support import LimitsServer, serving

pytestmark = pytest.mark.integration

BUDGET = 55.0  # seconds of fuzzing
EXAMPLES_PER_ROUND = 5
CALL_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitsServer]:
    with serving(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


def _operations(server: LimitsServer) -> list[Any]:
    status, document, _ = server.request("GET", "/openapi/v2")
    assert status == 200
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the served OpenAPI has no operations"
    return operations


def _call(server: LimitsServer, session: requests.Session, case: Any, failures: list[str]) -> None:
    try:
        response = case.call(
            base_url=server.url,
            session=session,
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=CALL_TIMEOUT,
            verify=str(server.ca_file),
        )
    except requests.exceptions.ReadTimeout:
        return  # a watch stream still open after its status line
    except requests.exceptions.ConnectionError as err:
        failures.append(f"connection failed: {err}\n{case.as_curl_command()}")
        return
    if response.status_code >= 500:
        failures.append(f"{response.status_code} {response.text[:300]}\n{case.as_curl_command()}")


def _runner(operation: Any, call: Any, deadline: float) -> Any:
    """A hypothesis test of ``operation``: ``EXAMPLES_PER_ROUND`` cases a call, none past ``deadline``."""

    @settings(
        max_examples=EXAMPLES_PER_ROUND,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        if time.monotonic() <= deadline:
            call(case)

    return run


def test_fuzzing_the_served_openapi_gets_no_5xx(server: LimitsServer) -> None:
    operations = _operations(server)
    session = requests.Session()
    session.verify = str(server.ca_file)
    failures: list[str] = []
    calls: dict[str, int] = {}
    deadline = time.monotonic() + BUDGET

    def call_for(label: str) -> Any:
        def call(case: Any) -> None:
            calls[label] = calls.get(label, 0) + 1
            _call(server, session, case, failures)

        return call

    runners = {op.label: _runner(op, call_for(op.label), deadline) for op in operations}
    try:
        while time.monotonic() < deadline:
            for run in runners.values():
                if time.monotonic() > deadline:
                    break
                run()
    finally:
        session.close()

    assert not failures, f"{len(failures)} responses >= 500:\n" + "\n\n".join(failures[:10])
    untried = [label for label in runners if not calls.get(label)]
    assert not untried, f"the budget ran out before these operations got a case: {untried}"
