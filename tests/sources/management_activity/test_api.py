"""Response classification and wire helpers of the Management Activity API, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from agent.errors import ApiError, FatalError, ThrottledError, TokenRejected, TransientApiError
from agent.http import Response
from agent.sources.management_activity.api import (
    AF_ACTIONS,
    ContentExpired,
    ContentMissing,
    InvalidNextPage,
    SubscriptionAlreadyEnabled,
    SubscriptionDisabled,
    SubscriptionMissing,
    WindowRejected,
    api_time,
    classify,
    next_page,
    parse_blob,
    parse_listing,
    same_origin,
    with_publisher,
)

URL = "https://manage.office.com/api/v1.0/t/activity/feed/subscriptions/content?contentType=Audit.Exchange&x=secret"


def resp(status: int, body: object | bytes = b"", **headers: str) -> Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(status, headers, raw, URL)


def err(status: int, code: str, **headers: str) -> Response:
    return resp(status, {"error": {"code": code, "message": f"message of {code}"}}, **headers)


def run(r: Response) -> object:
    return classify(r, "o365.exchange content", throttle_wait=30.0)


def test_af429_answered_as_403_is_throttling_with_a_default_wait():
    with pytest.raises(ThrottledError) as e:
        run(err(403, "AF429"))
    assert e.value.retry_after == 30.0
    with pytest.raises(ThrottledError) as e:
        run(err(429, "", **{"retry-after": "7"}))  # header names are case-insensitive
    assert e.value.retry_after == 7.0


@pytest.mark.parametrize(("response", "kind"), [
    (err(401, "AF10001"), TokenRejected),  # 401 first: a new token is the first thing to try
    (err(500, "AF50000"), TransientApiError),
    (err(400, "AF50005"), TransientApiError),
    (resp(503, b"<html>Service Unavailable</html>"), TransientApiError),
    (resp(408, b""), TransientApiError),
    (err(400, "AF20022"), SubscriptionMissing),
    (err(400, "AF20023"), SubscriptionDisabled),
    (err(400, "AF20024"), SubscriptionAlreadyEnabled),
    (err(400, "AF20030"), WindowRejected),
    (err(400, "AF20055"), WindowRejected),
    (err(400, "AF20031"), InvalidNextPage),
    (err(400, "AF20051"), ContentExpired),
    (err(400, "AF20050"), ContentMissing),
    (resp(404, b""), ContentMissing),
    (err(403, "AF10001"), ApiError),
    (err(400, "AF20013"), ApiError),
    (err(400, "SomethingNew"), ApiError),
])
def test_codes_map_to_actions(response: Response, kind: type[Exception]):
    with pytest.raises(kind):
        run(response)


def test_disabled_subscription_is_fatal_and_says_who_can_fix_it():
    with pytest.raises(SubscriptionDisabled) as e:
        run(err(400, "AF20023"))
    assert isinstance(e.value, FatalError)
    assert "administrator" in str(e.value)


def test_messages_never_carry_query_strings():
    with pytest.raises(ApiError) as e:
        run(err(400, "AF20013"))
    assert "secret" not in str(e.value) and "contentType" not in str(e.value)


def test_every_documented_fatal_code_is_in_the_table():
    for code in ("AF10001", "AF20001", "AF20002", "AF20003", "AF20010", "AF20011", "AF20012", "AF20013",
                 "AF20020", "AF20021", "AF20052", "AF20053", "AF20054"):
        assert AF_ACTIONS[code].value == "fatal"


def test_window_rejection_carries_the_server_clock():
    with pytest.raises(WindowRejected) as e:
        run(err(400, "AF20030", Date="Tue, 10 Mar 2026 12:30:00 GMT"))
    assert e.value.server_time == datetime(2026, 3, 10, 12, 30, tzinfo=UTC)


def test_truncated_and_malformed_bodies_are_transient():
    with pytest.raises(TransientApiError):
        run(resp(200, b'[{"Id": "a", "CreationTime": "2026-03-10T1'))
    with pytest.raises(TransientApiError):
        parse_blob({"value": []}, "blob")
    # an entry that is not an object is passed on for the archive to set aside (never a retry loop)
    assert parse_blob([{"Id": "a"}, "not an object"], "blob") == [{"Id": "a"}, "not an object"]
    assert parse_blob([{"Id": "a"}], "blob") == [{"Id": "a"}]
    with pytest.raises(TransientApiError):
        parse_listing([{"contentId": "x"}], "listing")
    with pytest.raises(TransientApiError):
        parse_listing({"contentId": "x"}, "listing")


def test_listing_entries_parse_times_and_default_the_expiration():
    entry = {"contentId": "a$b", "contentUri": "https://h/x", "contentCreated": "2026-03-10T10:00:00.123Z"}
    [c] = parse_listing([entry], "listing")
    assert c.created == datetime(2026, 3, 10, 10, 0, 0, 123000, tzinfo=UTC)
    assert c.expiration == datetime(2026, 3, 17, 10, 0, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize("name", ["NextPageUri", "nextpageuri", "NEXTPAGEURI", "NextPageUrl", "nextPageUrl"])
def test_next_page_header_spellings(name: str):
    assert next_page(resp(200, [], **{name: "https://h/next?nextPage=1"})) == "https://h/next?nextPage=1"
    assert next_page(resp(200, [])) is None


def test_publisher_identifier_is_added_once():
    assert with_publisher("https://h/p", "P") == "https://h/p?PublisherIdentifier=P"
    assert with_publisher("https://h/p?a=1", "P") == "https://h/p?a=1&PublisherIdentifier=P"
    assert with_publisher("https://h/p?publisheridentifier=Q", "P") == "https://h/p?publisheridentifier=Q"


def test_request_times_are_utc_seconds_without_zone():
    assert api_time(datetime(2026, 3, 10, 12, 0, 1, 999, tzinfo=UTC)) == "2026-03-10T12:00:01"


def test_token_goes_only_to_the_configured_host():
    assert same_origin("https://manage.office.com/api/v1/x?y", "https://manage.office.com/api/v1.0/t")
    assert not same_origin("https://evil.example/api", "https://manage.office.com/api/v1.0/t")
    assert not same_origin("http://manage.office.com/api", "https://manage.office.com/api/v1.0/t")
