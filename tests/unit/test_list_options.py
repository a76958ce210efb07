"""List and watch options checked as apimachinery's ValidateListOptions checks them."""

from __future__ import annotations

import pytest

from vmplane.apiserver.list_options import list_options
from vmplane.apiserver.status import ApiError

REFUSED = [
    (
        {"resourceVersionMatch": "Exact"},
        False,
        "resourceVersionMatch is forbidden unless resourceVersion is provided",
    ),
    ({"resourceVersionMatch": "Newest", "resourceVersion": "5"}, False, 'Unsupported value: "Newest"'),
    ({"resourceVersionMatch": "Exact", "resourceVersion": "0"}, False, 'forbidden for resourceVersion "0"'),
    (
        {"resourceVersionMatch": "Exact", "resourceVersion": "5", "continue": "x"},
        False,
        "when continue is provided",
    ),
    (
        {"resourceVersionMatch": "NotOlderThan"},
        True,
        "forbidden for watch unless sendInitialEvents is provided",
    ),
    ({"sendInitialEvents": "true"}, False, "sendInitialEvents is forbidden for list"),
    (
        {"sendInitialEvents": "true"},
        True,
        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
    ),
    (
        {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"},
        True,
        "sendInitialEvents requires setting allowWatchBookmarks to true",
    ),
]


@pytest.mark.parametrize(("query", "watch", "message"), REFUSED, ids=[str(i) for i in range(len(REFUSED))])
def test_invalid_options_are_a_422_naming_the_field(query: dict[str, str], watch: bool, message: str) -> None:
    with pytest.raises(ApiError) as err:
        list_options(query, watch=watch)
    assert err.value.code == 422
    assert err.value.status["message"].startswith('ListOptions.meta.k8s.io "" is invalid: ')
    assert message in err.value.status["message"]


def test_a_watch_list_request_is_accepted() -> None:
    query = {
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
        "resourceVersion": "",
    }
    options = list_options(query, watch=True)
    assert options.send_initial_events
    assert options.resource_version is None


def test_a_resource_version_that_is_no_number_is_a_400() -> None:
    with pytest.raises(ApiError) as err:
        list_options({"resourceVersion": "abc"}, watch=False)
    assert err.value.code == 400
