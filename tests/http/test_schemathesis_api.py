"""Property-based API tests: schemathesis against the service's own OpenAPI document (/docs.json).

Runs in-process through the session's TestClient (the entry service's ASGI app with the stage
services as local instances). The example budget is fixed (MAX_EXAMPLES per operation and mode) and
the run is derandomized (Hypothesis seeds from the test itself, no example database), so CI
sees the same cases every time. Checks: no 5xx, documented status codes, content types and
response bodies that match the documented schema.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.http

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(client) -> Iterator[Any]:
    """The OpenAPI document the service serves, loaded by schemathesis; service state restored afterwards."""
    document = client.get("/docs.json").json()
    yield schemathesis.openapi.from_dict(document)
    _restore_state(client)


def _restore_state(client) -> None:
    """Undo whatever generated admin calls changed: no active experiment, the default version active."""
    active = client.get("/reversal/experiments").json()["data"]["active_experiment_id"]
    if active:
        client.post(f"/reversal/experiments/{active}/stop")
    default = client.get("/reversal/models").json()["data"]["default"]
    client.post(f"/reversal/models/{default}/switch")


def send(client, case) -> Any:
    """Send a generated case through the in-process TestClient (requests-style kwargs -> httpx)."""
    kw = case.as_transport_kwargs(base_url=str(client.base_url))
    body: dict[str, Any] = {}
    if "json" in kw:
        body["json"] = kw["json"]
    elif isinstance(kw.get("data"), bytes | str):
        body["content"] = kw["data"]
    elif kw.get("data") is not None:
        body["data"] = kw["data"]
    return client.request(
        kw["method"], kw["url"], headers=kw.get("headers"), params=kw.get("params"), cookies=kw.get("cookies"), **body
    )


def _summary(exc: BaseException) -> str:
    """The failure titles of a schemathesis check failure, on one line."""
    inner = getattr(exc, "exceptions", None) or [exc]
    return "; ".join(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__ for e in inner)


def run_operation(client, operation, mode: GenerationMode, statuses: Counter[int]) -> list[str]:
    """MAX_EXAMPLES derandomized cases of one operation in one mode; the failures as text."""
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def check(case) -> None:
        response = send(client, case)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:
            where = f"{operation.label} [{mode.value}] {response.status_code}"
            failures.append(f"{where}: {_summary(exc)} {response.text[:300]}")

    try:
        check()
    except Unsatisfiable:  # nothing to make invalid (e.g. negative mode of a route without parameters)
        assert mode is GenerationMode.NEGATIVE, operation.label
    return failures


def test_api_conforms_to_its_openapi_document(client, api_schema):
    """Every generated request (valid and invalid): no 5xx, documented statuses, bodies matching the schema."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 18, [op.label for op in operations]
    statuses: Counter[int] = Counter()
    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for failure in run_operation(client, operation, mode, statuses)
    ]
    assert not failures, "\n".join(failures[:40])
    assert sum(statuses.values()) >= 10 * len(operations), statuses  # the budget was really spent
    assert {200, 404, 422} <= set(statuses), statuses


def _call(client, api_schema, method: str, path: str, status: int, body: Any = None, **params: str) -> dict:
    """One hand-written request through its documented operation; checked like the generated ones."""
    case = api_schema[path][method].Case(path_parameters=params or None, body=body if body is not None else NOT_SET)
    response = send(client, case)
    assert response.status_code == status, response.text
    case.validate_response(response, checks=CHECKS)
    return response.json()


def test_successful_responses_match_the_document(client, api_schema, candle_json):
    """Valid requests on every route (predict, batch, compare, legacy, experiment cycle, switch) match the schema."""
    body = {"pair": "EUR/USD", "timeframe": "1h", "data": candle_json(3300, 80)}
    eid = f"schema-{uuid.uuid4().hex[:8]}"
    experiment = {"experiment_id": eid, "name": "schema", "variant_a": "v3.0", "variant_b": "v3.1"}
    call = functools.partial(_call, client, api_schema)
    call("GET", "/health", 200)
    call("GET", "/reversal/models", 200)
    call("GET", "/reversal/models/{version}", 200, version="v2.9")
    call("POST", "/reversal/predict", 200, body)
    call("POST", "/reversal/predict/batch", 200, {"items": [body, {"pair": "EUR/USD"}]})
    call("POST", "/reversal/compare", 200, body)
    call("POST", "/predict", 200, {"data": body["data"]})
    call("POST", "/reversal/experiments", 201, experiment)
    call("POST", "/reversal/experiments/{experiment_id}/activate", 200, experiment_id=eid)
    served = call("POST", "/reversal/predict", 200, {**body, "user_id": "schema-user"})["data"]
    outcome = {"prediction_id": served["prediction_id"]}
    call("POST", "/reversal/predictions/{prediction_id}/outcome", 201, {"pips": 3.5}, **outcome)
    call("POST", "/reversal/predictions/{prediction_id}/outcome", 200, {"pips": 3.5}, **outcome)
    call("GET", "/reversal/experiments", 200)
    call("GET", "/reversal/experiments/{experiment_id}/metrics", 200, experiment_id=eid)
    call("POST", "/reversal/experiments/{experiment_id}/stop", 200, experiment_id=eid)
    call("POST", "/reversal/models/{version}/switch", 200, version="v3.0")
    call("POST", "/reversal/models/{version}/switch", 200, version="v3.1")
