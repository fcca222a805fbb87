"""The API against its own OpenAPI document: generated requests, valid and invalid, never get a
5xx, and every response matches the schema (status, headers, body).

Driven through hypothesis directly: schemathesis' pytest plugin does not support pytest 9 yet.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from flask import Flask
from schemathesis.generation import GenerationMode

pytestmark = pytest.mark.integration

POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# Negative cases exist only where there is input to break: the page parameter.
CASES = [
    ("GET /orders/{page}", POSITIVE),
    ("GET /orders/{page}", NEGATIVE),
    ("GET /healthz", POSITIVE),
    ("GET /readyz", POSITIVE),
    ("GET /openapi.json", POSITIVE),
]


@pytest.mark.parametrize(("operation_name", "mode"), CASES)
def test_every_response_matches_the_document_and_none_is_a_5xx(
    app: Flask, operation_name: str, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operation = schema[operation_name.split(" ")[1]][operation_name.split(" ", maxsplit=1)[0]]
    seen: list[int] = []

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=50,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate()
        seen.append(response.status_code)

    check()
    assert seen
    assert all(status < 500 for status in seen)
