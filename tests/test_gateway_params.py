"""Header and parameter values are ASCII numbers in range or refused (never reinterpreted:
`\\d` and float() would take other scripts' digits, "1_0" and " 5 ")."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from cluster.errors import InvalidRequest
from gateway.http.body import read_body
from gateway.params import parse_ttl, preconditions


@pytest.mark.parametrize("value", ['"\u0661"', "\u0661\u0662", '"9223372036854775808"',
                                   "18446744073709551616", '"1 2"', '"-1"', "\u00b2"])
def test_a_version_header_is_ascii_and_signed_64_bits(value: str) -> None:
    with pytest.raises(InvalidRequest):
        preconditions({"if-match": value}, allow_create=True)


def test_the_largest_version_is_taken_exactly() -> None:
    pre = preconditions({"if-match": '"9223372036854775807"'}, allow_create=True)
    assert pre.if_match == 2**63 - 1
    assert preconditions({"if-match": "0"}, allow_create=True).if_match == 0


@pytest.mark.parametrize("raw", ["1_0", " 5", "5 ", "\u0665", "nan", "inf", "0x10", ".", "1e",
                                 "", "\u00b2"])
def test_a_ttl_is_a_plain_decimal_number(raw: str) -> None:
    with pytest.raises(InvalidRequest, match="number of seconds"):
        parse_ttl(raw, 1e9)


@pytest.mark.parametrize(("raw", "seconds"), [("5", 5.0), ("0.5", 0.5), (".5", 0.5),
                                              ("1e3", 1000.0), ("2.5E1", 25.0), ("+7", 7.0)])
def test_plain_ttls_are_accepted(raw: str, seconds: float) -> None:
    assert parse_ttl(raw, 1e9) == seconds


def test_a_content_length_of_other_digits_is_refused() -> None:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    scope = {"type": "http", "method": "PUT", "headers": [(b"content-length", "\u00b2".encode(
        "latin-1"))]}
    with pytest.raises(InvalidRequest, match="Content-Length"):
        asyncio.run(read_body(Request(scope, receive), 1024))
