"""The protobuf wire format of the self reviews, as kubectl 1.32 sends them."""

from __future__ import annotations

import pytest

from vmplane.apiserver.protobuf import ProtobufError, decode_object, encode_object, is_protobuf

#: ``kubectl auth can-i update vmi/x`` (namespace default), as kubectl 1.32.4 sent it here.
KUBECTL_CAN_I_UPDATE_VMI = bytes.fromhex(
    "6b3873000a320a17617574686f72697a"
    "6174696f6e2e6b38732e696f2f763112"
    "1753656c665375626a65637441636365"
    "7373526576696577125e0a100a001200"
    "1a0022002a0032003800420012400a3e"
    "0a0764656661756c7412067570646174"
    "651a0b6b756265766972742e696f2200"
    "2a177669727475616c6d616368696e65"
    "696e7374616e63657332003a01781a08"
    "080012001a0020001a002200"
)


def test_kubectl_access_review_decodes_to_its_json_form() -> None:
    # Zero values are left out, as Go's JSON (omitempty) leaves them out.
    assert decode_object(KUBECTL_CAN_I_UPDATE_VMI) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": {},
        "spec": {
            "resourceAttributes": {
                "namespace": "default",
                "verb": "update",
                "group": "kubevirt.io",
                "resource": "virtualmachineinstances",
                "name": "x",
            }
        },
        "status": {},
    }


def test_self_review_round_trips() -> None:
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {}}
    assert decode_object(encode_object(review)) == review


def test_body_without_the_magic_number_is_refused() -> None:
    with pytest.raises(ProtobufError, match="magic"):
        decode_object(b"\x0a\x00")


def test_truncated_envelope_is_refused() -> None:
    with pytest.raises(ProtobufError, match="malformed"):
        decode_object(KUBECTL_CAN_I_UPDATE_VMI[:20])


def test_kind_without_a_message_is_refused_by_name() -> None:
    body = encode_object({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    body = body.replace(b"SelfSubjectReview", b"SelfSubjectReviex")
    with pytest.raises(ProtobufError, match="no protobuf decoding for SelfSubjectReviex"):
        decode_object(body)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/vnd.kubernetes.protobuf", True),
        ("application/vnd.kubernetes.protobuf; charset=binary", True),
        ("application/json", False),
        (None, False),
    ],
)
def test_is_protobuf(content_type: str | None, expected: bool) -> None:
    assert is_protobuf(content_type) is expected
