"""Which answers are re-encoded in protobuf: the built-in kinds, when protobuf comes first in Accept."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from vmplane.apiserver.protobuf import MEDIA_TYPE, decode_object
from vmplane.apiserver.protobuf_responses import prefers_protobuf, reencoded

NAMESPACE = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {"name": "x"},
    "status": {"phase": "Active"},
}


@pytest.mark.parametrize(
    ("accept", "prefers"),
    [
        (f"{MEDIA_TYPE}, application/json", True),
        (f"{MEDIA_TYPE}", True),
        (f"application/json, {MEDIA_TYPE}", False),
        (f"{MEDIA_TYPE};as=Table;v=v1;g=meta.k8s.io, application/json", False),
        ("*/*", False),
        (None, False),
    ],
    ids=["client-go", "protobuf-only", "json-first", "protobuf-table", "any", "none"],
)
def test_protobuf_is_chosen_only_when_asked_for_first(accept: str | None, prefers: bool) -> None:
    assert prefers_protobuf(accept) is prefers


def test_a_namespace_answer_becomes_protobuf_and_keeps_status_and_warnings() -> None:
    response = web.Response(body=json.dumps(NAMESPACE).encode(), status=201, content_type="application/json")
    response.headers.add("Warning", '299 - "careful"')
    answer = reencoded(response, MEDIA_TYPE)
    assert isinstance(answer, web.Response)
    assert (answer.status, answer.content_type) == (201, MEDIA_TYPE)
    assert answer.headers.getall("Warning") == ['299 - "careful"']
    assert isinstance(answer.body, bytes)
    assert decode_object(answer.body) == NAMESPACE


@pytest.mark.parametrize(
    "body",
    [
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "x"}},
        {"apiVersion": "v1", "kind": "Status", "code": 404},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": 5}},
    ],
    ids=["custom-kind", "status", "unencodable-value"],
)
def test_other_answers_stay_json(body: dict[str, object]) -> None:
    response = web.Response(body=json.dumps(body).encode(), content_type="application/json")
    assert reencoded(response, MEDIA_TYPE) is response
