"""Whatever bytes follow the magic number, decoding gives a JSON-shaped object or a refusal with a
reason (``ProtobufError``, or the depth limit's 400), never another exception."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from vmplane.apiserver.protobuf import ProtobufError, decode_object, encode_object
from vmplane.apiserver.status import ApiError

_NAMESPACE = encode_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})


def _outcome(body: bytes) -> str:
    """Why it was refused, or the decoded object serialised (which fails if it is not JSON-shaped)."""
    try:
        decoded = decode_object(body)
    except ProtobufError as err:
        return f"refused: {err}"
    except ApiError as err:
        return f"refused with {err.code}: {err}"
    return json.dumps(decoded)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_to_json_or_are_refused(tail: bytes) -> None:
    assert _outcome(b"k8s\x00" + tail).startswith(("refused: ", "refused with 400: ", "{"))


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=4, max_value=len(_NAMESPACE) - 1), st.integers(min_value=0, max_value=255))
def test_a_namespace_with_one_byte_changed_decodes_to_json_or_is_refused(position: int, byte: int) -> None:
    outcome = _outcome(_NAMESPACE[:position] + bytes([byte]) + _NAMESPACE[position + 1 :])
    assert outcome.startswith(("refused: ", "refused with 400: ", "{"))
