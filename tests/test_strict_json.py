"""Strict JSON input (cluster.strict_json) and the places that decode with it, without a
server: every text is taken exactly as written or refused naming where, never rounded.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster import strict_json
from cluster.errors import InvalidRequest, InvalidRow
from cluster.settings import StorageSettings
from gateway.live import wire
from storage import merge_patch
from storage._format import encode_values

BIG = ["9223372036854775808", "-9223372036854775809", "12345678901234567890123",
       "18446744073709551615", "18446744073709551616", "-18446744073709551617", "9" * 400]
EDGE = ["9223372036854775807", "-9223372036854775808", "0", "-0", "1000000000000000000"]
FLOATS = ["1.2345678901234568e+22", "12345678901234567890.0", "1e300", "-0.0", "0.5",
          "9223372036854775808.0", "1E19", "123456789012345678901234567890e-10"]


def nested(levels: int, open_: str = "[", close: str = "]", inner: str = "1") -> str:
    return open_ * levels + inner + close * levels


def deep_object(levels: int) -> str:
    return '{"k":' * levels + "1" + "}" * levels


def refused(text: bytes | str) -> strict_json.Refused:
    with pytest.raises(strict_json.Refused) as info:
        strict_json.loads(text)
    return info.value


# -- integers --------------------------------------------------------------------------


@pytest.mark.parametrize("number", BIG)
@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "str"])
def test_integers_beyond_signed_64_bits_are_refused_naming_where(number: str,
                                                                  as_bytes: bool) -> None:
    text = '{"a": {"b": [0, ' + number + ']}, "z": "12345678901234567890123"}'
    e = refused(text.encode() if as_bytes else text)
    assert e.kind == "integer"
    assert e.path == ("a", "b", 1)
    assert e.message("row").startswith("row.a.b[1]: integers must fit in signed 64 bits")
    assert "-9223372036854775808 to 9223372036854775807" in e.problem
    assert (number if len(number) <= 40 else "400 digits") in e.problem
    assert e.document is None or isinstance(e.document, dict)


@pytest.mark.parametrize("number", BIG)
def test_a_bare_big_integer_is_refused(number: str) -> None:
    e = refused(number)
    assert e.path == () and e.message("row").startswith("row: integers must fit")


@pytest.mark.parametrize("number", EDGE)
def test_integers_in_range_are_kept_exactly(number: str) -> None:
    value = strict_json.loads('{"a": [' + number + "]}")
    assert value == {"a": [int(number)]}
    assert type(value["a"][0]) is int


@pytest.mark.parametrize("number", FLOATS)
def test_floats_stay_floats(number: str) -> None:
    value = strict_json.loads(f"[{number}]")[0]
    assert type(value) is float and value == float(number)


def test_digits_in_strings_and_keys_are_text() -> None:
    text = '{"12345678901234567890123": "99999999999999999999999999", "n": 1}'
    assert strict_json.loads(text) == json.loads(text)


def test_the_first_big_integer_is_named() -> None:
    e = refused('{"ok": 9223372036854775807, "list": [1, 2, {"x": 2e30, "y": 1e30}],'
                ' "bad": {"$gt": 99999999999999999999}, "later": 99999999999999999999}')
    assert e.part("where") == "where.bad.$gt"


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_every_integer_is_exact_or_refused(n: int) -> None:
    text = orjson.dumps({"n": [n]}) if -(2**63) <= n < 2**64 else f'{{"n": [{n}]}}'.encode()
    if strict_json.INT_MIN <= n <= strict_json.INT_MAX:
        assert strict_json.loads(text) == {"n": [n]}
    else:
        assert refused(text).path == ("n", 0)


# -- nesting ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "path_start"), [
    (nested(300), "row[0][0][0][0][0][0][0][0] ...118 more... [0][0]"),
    (deep_object(300), "row.k.k.k.k.k.k.k.k ...118 more... .k.k"),
    ('{"a": ' + nested(129) + "}", "row.a[0][0][0][0][0][0][0] ...118 more... [0][0]"),
])
def test_deep_nesting_is_refused_naming_the_path(text: str, path_start: str) -> None:
    e = refused(text)
    assert e.kind == "depth"
    assert len(e.path) == 128  # the path to the 129th level
    assert e.message("row") == f"{path_start}: nested too deep: arrays and objects nest at " \
        "most 128 levels"
    assert "64 bits" not in e.message()


def test_past_orjsons_own_limit_the_rule_is_stated_without_a_path() -> None:
    e = refused(nested(2000))
    assert e.kind == "depth" and e.path == ()
    assert e.message("row") == "row: nested too deep: arrays and objects nest at most 128 levels"


def test_128_levels_are_accepted_and_encode_inside_an_envelope() -> None:
    for text in (nested(128), deep_object(128), nested(64, "[", "]", deep_object(64))):
        value = strict_json.loads(text)
        # what a value travels in: a delta in a batch, a page of rows
        assert orjson.loads(orjson.dumps([{"row": value}])) == [{"row": value}]
        assert orjson.dumps({"rows": [{"row": value}]})


def test_the_limit_is_exact_when_brackets_are_many() -> None:
    """More brackets than levels: orjson's encoder limit decides, exactly at 128."""
    ok = "[" + nested(127) + ", [], {}, " + deep_object(127) + "]"
    assert strict_json.loads(ok) == json.loads(ok)
    e = refused("[[], " + nested(128) + "]")
    assert e.kind == "depth" and len(e.path) == 128 and e.path[0] == 1
    e = refused('{"a": [], "b": ' + deep_object(128) + "}")
    assert e.path[:2] == ("b", "k") and len(e.path) == 128


def test_check_encoded_walks_only_when_the_text_says_so() -> None:
    good: list[dict[str, Any]] = [{"a": [[1]] * 200}, {"n": 2**63 - 1, "s": "9" * 30}]
    for value in good:
        strict_json.check_encoded(value, orjson.dumps(value))
    bad: list[tuple[dict[str, Any], tuple[Any, ...]]] = [
        ({"a": [[1]] * 200, "b": json.loads(nested(129))}, ("b",)),
        ({"n": [2**63]}, ("n", 0)),
    ]
    for value, path in bad:
        with pytest.raises(strict_json.Refused) as info:
            strict_json.check_encoded(value, orjson.dumps(value))
        assert info.value.path[: len(path)] == path


def test_many_shallow_brackets_are_fine() -> None:
    text = json.dumps({"a": [[1]] * 500, "b": [{"c": []}] * 500})
    assert strict_json.loads(text) == json.loads(text)


def test_malformed_json_is_left_to_the_caller() -> None:
    for text in (b'{"a": ', b"[1e400]", b'{"a": NaN}', b"[1] x", b'"\\ud800"'):
        with pytest.raises(orjson.JSONDecodeError):
            strict_json.loads(text)


# -- values built in Python -----------------------------------------------------------


@pytest.mark.parametrize(("value", "path", "kind"), [
    ({"a": 2**63}, ("a",), "integer"),
    ({"a": [-(2**63) - 1]}, ("a", 0), "integer"),
    ({"a": {"b": float("nan")}}, ("a", "b"), "value"),
    ({"a": (1, 2)}, ("a",), "value"),
    ({"a": {3: 1}}, ("a",), "value"),
    ({"a": "\ud800"}, ("a",), "value"),
    ([[[1]]], (), None),
])
def test_check(value: Any, path: tuple[Any, ...], kind: str | None) -> None:
    if kind is None:
        strict_json.check(value)
        return
    with pytest.raises(strict_json.Refused) as info:
        strict_json.check(value)
    assert (info.value.path, info.value.kind) == (path, kind)


def test_check_not_strict_only_minds_integers_and_depth() -> None:
    strict_json.check({"a": (1, 2), "b": float("nan"), 3: "x"}, strict=False)
    with pytest.raises(strict_json.Refused):
        strict_json.check({"a": 2**63}, strict=False)


def test_render_path() -> None:
    assert strict_json.render_path("", ["where", "a", "$in", 3]) == "where.a.$in[3]"
    assert strict_json.render_path("row", [0, "b"]) == "row[0].b"
    assert strict_json.render_path("", [2, "x"]) == "[2].x"
    assert strict_json.render_path("ops", []) == "ops"


# -- storage: the last line for values built in Python ----------------------------------

SETTINGS = StorageSettings()


@pytest.mark.parametrize(("row", "where"), [
    ({"a": 2**63}, "row.a"),
    ({"a": {"b": [-(2**63) - 1]}}, "row.a.b[0]"),
    ({"a": 2**64}, "row.a"),
    ({"a": 12345678901234567890123}, "row.a"),
    ({"a": json.loads(nested(300))}, "row.a[0]"),
])
def test_the_store_refuses_what_the_gateway_refuses(row: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        encode_values(row, SETTINGS)
    assert str(info.value).startswith(where)


@pytest.mark.parametrize(("patch", "where"), [
    ({"a": {"b": 2**63}}, "row.a.b"),
    ({"a": {"c": json.loads(deep_object(300))}}, "row.a.c.k"),
])
def test_a_merged_patch_is_checked_as_a_row(patch: dict[str, Any], where: str) -> None:
    merged = merge_patch({"a": {"b": 1}, "z": 2**63 - 1}, patch)
    with pytest.raises(InvalidRequest) as info:
        encode_values(merged, SETTINGS)
    assert str(info.value).startswith(where)


def test_the_store_keeps_edge_values_exactly() -> None:
    row = {"max": 2**63 - 1, "min": -(2**63), "f": 1.2345678901234568e22,
           "deep": json.loads(nested(127))}
    framed = encode_values(row, SETTINGS)
    assert orjson.loads(framed[1:]) == row


def test_the_store_still_refuses_other_values_as_invalid_row() -> None:
    for row in ({"a": {1, 2}}, {1: "non-string key"}):
        with pytest.raises(InvalidRow):
            encode_values(row, SETTINGS)


# -- the live wire -----------------------------------------------------------------------


def wire_error(message: str) -> wire.WireError:
    with pytest.raises(wire.WireError) as info:
        wire.parse(message)
    return info.value


@pytest.mark.parametrize(("query", "part"), [
    ('{"entity":"t","limit":5,"where":{"price":{"$gt":12345678901234567890123}}}',
     "where.price.$gt"),
    ('{"entity":"t","limit":5,"where":{"a":{"$in":[1,9223372036854775808]}}}',
     "where.a.$in[1]"),
    ('{"entity":"t","limit":18446744073709551616}', "limit"),
    ('{"entity":"t","limit":5,"after":-9223372036854775809}', "after"),
    ("99999999999999999999", "query"),
    ('{"entity":"t","limit":5,"where":{"a":' + nested(300) + "}}",
     "where.a[0][0][0][0][0][0] ...117 more... [0][0]"),  # counted from the message
])
def test_a_subscribe_with_a_refused_value_is_invalid_query(query: str, part: str) -> None:
    e = wire_error('{"type":"subscribe","sub":"s1","query":' + query + "}")
    assert (e.code, e.sub) == ("invalid_query", "s1")
    assert str(e).startswith(f"{part}: ")


def test_a_reanchor_with_a_refused_value_is_invalid_query() -> None:
    e = wire_error('{"type":"reanchor","sub":"s","after":null,"limit":9223372036854775808}')
    assert (e.code, e.sub) == ("invalid_query", "s")
    assert str(e).startswith("limit: integers must fit in signed 64 bits")


def test_refused_values_elsewhere_are_invalid_message() -> None:
    e = wire_error('{"type":"ping","t":12345678901234567890123}')
    assert (e.code, e.sub) == ("invalid_message", None)
    assert str(e).startswith("t: integers must fit in signed 64 bits")
    e = wire_error('{"type":"ping","t":' + nested(300) + "}")
    assert e.code == "invalid_message" and str(e).startswith("t[0][0]")
    e = wire_error(nested(2000))
    assert e.code == "invalid_message" and "at most 128 levels" in str(e)
    e = wire_error('{"type":"unsubscribe","sub":"u","x":99999999999999999999}')
    assert (e.code, e.sub) == ("invalid_message", "u")


def test_edge_values_pass_the_wire_exactly() -> None:
    msg = wire.parse('{"type":"subscribe","sub":"s","query":{"entity":"t","limit":5,'
                     '"where":{"a":9223372036854775807,"b":-9223372036854775808,"c":1e22}}}')
    assert isinstance(msg, wire.Subscribe)
    assert msg.query["where"] == {"a": 2**63 - 1, "b": -(2**63), "c": 1e22}
    pong = wire.parse('{"type":"ping","t":9223372036854775807}')
    assert isinstance(pong, wire.Ping) and pong.t == 2**63 - 1
