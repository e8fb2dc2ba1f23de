"""Refusals of invalid queries (PROTOCOL.md section 2): each names the offending part.

Depth is counted in filter objects: `where` is level 1, each filter inside `$and`, `$or`,
`$nor` or `$not` (and each field-level `$not`) one level more; at most 8 levels.
"""

from __future__ import annotations

from typing import Any

import pytest

from cluster.errors import InvalidQuery
from cluster.query import CursorSigner, Mode, parse_query
from cluster.settings import QueryLimits

SIGNER = CursorSigner(b"k" * 32)
DROP = object()


def q(**changes: Any) -> dict[str, Any]:
    """A valid window query with `changes` applied (DROP removes a key)."""
    out: dict[str, Any] = {"entity": "tasks", "limit": 10}
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def w(where: Any) -> dict[str, Any]:
    return q(where=where)


def nested_and(levels: int) -> dict[str, Any]:
    """A filter `levels` filter objects deep: $and inside $and ... around {"a": 1}."""
    where: dict[str, Any] = {"a": 1}
    for _ in range(levels - 1):
        where = {"$and": [where]}
    return where


def nested_top_not(levels: int) -> dict[str, Any]:
    where: dict[str, Any] = {"a": 1}
    for _ in range(levels - 1):
        where = {"$not": where}
    return where


def nested_field_not(levels: int) -> dict[str, Any]:
    expr: dict[str, Any] = {"$gt": 1}
    for _ in range(levels - 1):
        expr = {"$not": expr}
    return {"a": expr}


def nested_array(levels: int) -> Any:
    """`levels` arrays, one inside the other, around 1."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def nested_object(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return value


def _cursor() -> str:
    query = parse_query(q(sort=["a"]), signer=SIGNER)
    return SIGNER.make("tasks", query.sort_spec, query.sort_key("r1", {"a": 1}))


# (id, query, the part the error must name, a fragment its message must hold)
INVALID: list[tuple[str, Any, str, str]] = [
    # the query object itself
    ("not an object", ["entity", "tasks"], "query", "object"),
    ("null query", None, "query", "object"),
    ("unknown key", q(filter={}), "filter", "unknown"),
    ("unknown key case", q(Where={}), "Where", "unknown"),
    ("unknown key cursor", q(cursor="x"), "cursor", "unknown"),
    # operators
    ("unknown top operator", w({"$foo": 1}), "where.$foo", "$foo"),
    ("top $where", w({"$where": "1 == 1"}), "where.$where", "$where"),
    ("top $eq", w({"$eq": 1}), "where.$eq", "$eq"),
    ("top $in", w({"$in": [1]}), "where.$in", "$in"),
    ("unknown field operator", w({"a": {"$foo": 1}}), "where.a.$foo", "$foo"),
    ("$regex", w({"a": {"$regex": "^x"}}), "where.a.$regex", "$regex"),
    ("field $and", w({"a": {"$and": [{"$gt": 1}]}}), "where.a.$and", "$and"),
    ("field $or", w({"a": {"$or": [1]}}), "where.a.$or", "$or"),
    ("unknown in $or", w({"$or": [{"a": 1}, {"b": {"$x": 1}}]}), "where.$or[1].b.$x", "$x"),
    ("operator mixed with field", w({"a": {"$gt": 1, "b": 2}}), "where.a.b", "mixed"),
    ("field mixed with operator", w({"a": {"b": 2, "$gt": 1}}), "where.a.b", "mixed"),
    # columns
    ("empty column", w({"": 1}), "where.", "non-empty"),
    ("empty segment", w({"a..b": 1}), "where.a..b", "empty"),
    ("leading dot", w({".a": 1}), "where..a", "empty"),
    ("trailing dot", w({"a.": 1}), "where.a.", "empty"),
    ("$ segment", w({"a.$b": 1}), "where.a.$b", "$b"),
    ("control character", w({"a\x01": 1}), "where.a\x01", "control"),
    ("column too long", w({"a" * 257: 1}), "where." + "a" * 257, "longer"),
    # where itself
    ("where array", w([{"a": 1}]), "where", "object"),
    ("where string", w("a = 1"), "where", "object"),
    ("where number", w(5), "where", "object"),
    ("where true", w(True), "where", "object"),
    # order operators
    ("$gt null", w({"a": {"$gt": None}}), "where.a.$gt", "null"),
    ("$gte array", w({"a": {"$gte": [1]}}), "where.a.$gte", "array"),
    ("$lt object", w({"a": {"$lt": {"x": 1}}}), "where.a.$lt", "object"),
    ("$lte empty array", w({"a": {"$lte": []}}), "where.a.$lte", "array"),
    # $in / $nin
    ("$in number", w({"a": {"$in": 5}}), "where.a.$in", "array"),
    ("$in string", w({"a": {"$in": "abc"}}), "where.a.$in", "array"),
    ("$in object", w({"a": {"$in": {"x": 1}}}), "where.a.$in", "array"),
    ("$in null", w({"a": {"$in": None}}), "where.a.$in", "array"),
    ("$in nested array", w({"a": {"$in": [[1]]}}), "where.a.$in[0]", "scalar"),
    ("$in object value", w({"a": {"$in": [1, {"x": 1}]}}), "where.a.$in[1]", "scalar"),
    ("$nin string", w({"a": {"$nin": "x"}}), "where.a.$nin", "array"),
    ("$nin nested array", w({"a": {"$nin": ["x", []]}}), "where.a.$nin[1]", "scalar"),
    ("$in 1001 values", w({"a": {"$in": list(range(1001))}}), "where.a.$in", "1000"),
    ("$nin 1001 values", w({"a": {"$nin": [str(i) for i in range(1001)]}}), "where.a.$nin",
     "1000"),
    # $exists / $prefix
    ("$exists 1", w({"a": {"$exists": 1}}), "where.a.$exists", "bool"),
    ("$exists string", w({"a": {"$exists": "true"}}), "where.a.$exists", "bool"),
    ("$exists null", w({"a": {"$exists": None}}), "where.a.$exists", "bool"),
    ("$prefix number", w({"a": {"$prefix": 1}}), "where.a.$prefix", "string"),
    ("$prefix null", w({"a": {"$prefix": None}}), "where.a.$prefix", "string"),
    ("$prefix array", w({"a": {"$prefix": ["a"]}}), "where.a.$prefix", "string"),
    ("$prefix bool", w({"a": {"$prefix": True}}), "where.a.$prefix", "string"),
    # $not
    ("field $not bare number", w({"a": {"$not": 5}}), "where.a.$not", "operator"),
    ("field $not bare string", w({"a": {"$not": "x"}}), "where.a.$not", "operator"),
    ("field $not null", w({"a": {"$not": None}}), "where.a.$not", "operator"),
    ("field $not empty", w({"a": {"$not": {}}}), "where.a.$not", "operator"),
    ("field $not filter", w({"a": {"$not": {"b": 1}}}), "where.a.$not", "operator"),
    ("field $not mixed", w({"a": {"$not": {"$gt": 1, "b": 1}}}), "where.a.$not", "operator"),
    ("top $not number", w({"$not": 5}), "where.$not", "object"),
    ("top $not array", w({"$not": [{"a": 1}]}), "where.$not", "object"),
    ("top $not null", w({"$not": None}), "where.$not", "object"),
    # $and / $or / $nor
    ("empty $and", w({"$and": []}), "where.$and", "non-empty"),
    ("empty $or", w({"$or": []}), "where.$or", "non-empty"),
    ("empty $nor", w({"$nor": []}), "where.$nor", "non-empty"),
    ("$and object", w({"$and": {"a": 1}}), "where.$and", "array"),
    ("$or null", w({"$or": None}), "where.$or", "array"),
    ("$and of a number", w({"$and": [{"a": 1}, 5]}), "where.$and[1]", "object"),
    ("$nor of an array", w({"$nor": [[{"a": 1}]]}), "where.$nor[0]", "object"),
    # limits
    ("depth 9 by $and", w(nested_and(9)), "where" + ".$and[0]" * 8, "deeper than 8"),
    ("depth 9 by $not", w(nested_top_not(9)), "where" + ".$not" * 8, "deeper than 8"),
    ("depth 9 by field $not", w(nested_field_not(9)), "where.a" + ".$not" * 8,
     "deeper than 8"),
    ("depth 50", w(nested_and(50)), "where" + ".$and[0]" * 8, "deeper than 8"),
    ("65 fields", w({f"f{i}": i for i in range(65)}), "where.f64", "64"),
    ("65 in $and", w({"$and": [{"f": i} for i in range(65)]}), "where.$and[64].f", "64"),
    ("65 operators", w({"$or": [{f"f{i}": {"$gt": 0, "$lt": 9}} for i in range(33)]}),
     "where.$or[32].f32.$gt", "64"),
    # values: integers in signed 64 bits, bounded nesting, plain JSON (cluster.strict_json)
    ("bare 2**63", w({"a": 2**63}), "where.a", "signed 64 bits"),
    ("bare -2**63-1", w({"a": -(2**63) - 1}), "where.a", "signed 64 bits"),
    ("$eq 12345678901234567890123", w({"a": {"$eq": 12345678901234567890123}}),
     "where.a.$eq", "got 12345678901234567890123"),
    ("$gt 2**63", w({"price": {"$gt": 2**63}}), "where.price.$gt", "signed 64 bits"),
    ("$lte -2**63-1", w({"a": {"$lte": -(2**63) - 1}}), "where.a.$lte", "signed 64 bits"),
    ("$in big", w({"a": {"$in": [1, 2**64]}}), "where.a.$in[1]", "signed 64 bits"),
    ("$nin big", w({"a": {"$nin": [-(2**70)]}}), "where.a.$nin[0]", "signed 64 bits"),
    ("$ne big", w({"a": {"$ne": 2**63}}), "where.a.$ne", "signed 64 bits"),
    ("$contains nested big", w({"a": {"$contains": {"b": [0, 2**63]}}}),
     "where.a.$contains.b[1]", "signed 64 bits"),
    ("object value big", w({"a": {"b": {"c": 2**63}}}), "where.a.b.c", "signed 64 bits"),
    ("big in $or", w({"$or": [{"a": 1}, {"b": {"$gte": 2**63}}]}), "where.$or[1].b.$gte",
     "signed 64 bits"),
    ("big under field $not", w({"a": {"$not": {"$lt": 2**63}}}), "where.a.$not.$lt",
     "signed 64 bits"),
    # the 129th level is named; a path of more than 12 steps shows its first 8 and last 2
    ("300-deep array", w({"a": nested_array(300)}),
     "where.a" + "[0]" * 8 + " ...118 more... [0][0]", "nest at most 128 levels"),
    ("300-deep object", w({"a": nested_object(300)}),
     "where.a" + ".k" * 8 + " ...118 more... .k.k", "nest at most 128 levels"),
    ("129-deep $contains", w({"a": {"$contains": nested_array(129)}}),
     "where.a.$contains" + "[0]" * 8 + " ...118 more... [0][0]", "nest at most 128 levels"),
    ("300-deep in $in", w({"a": {"$in": [nested_array(300)]}}), "where.a.$in[0]", "scalars"),
    ("NaN", w({"a": float("nan")}), "where.a", "finite"),
    ("infinity", w({"a": {"$gt": float("inf")}}), "where.a.$gt", "finite"),
    ("non-string key", w({"a": {"b": {1: 2}}}), "where.a.b", "keys are strings"),
    ("set value", w({"a": {"$eq": {1, 2}}}), "where.a.$eq", "not a JSON value"),
    ("lone surrogate", w({"a": "\ud800"}), "where.a", "surrogate"),
    ("lone surrogate column", w({"a\ud800": 1}), "where.a\ud800", "surrogate"),
    # entity
    ("entity missing", q(entity=DROP), "entity", "entity name"),
    ("entity empty", q(entity=""), "entity", "entity name"),
    ("entity digit first", q(entity="1tasks"), "entity", "entity name"),
    ("entity 65 chars", q(entity="a" * 65), "entity", "entity name"),
    ("entity dash", q(entity="my-tasks"), "entity", "entity name"),
    ("entity colon", q(entity="a:b"), "entity", "entity name"),
    ("entity dot", q(entity="a.b"), "entity", "entity name"),
    ("entity space", q(entity="a b"), "entity", "entity name"),
    ("entity unicode", q(entity="t\u00e2che"), "entity", "entity name"),
    ("entity unicode digit", q(entity="a\u0663"), "entity", "entity name"),
    ("entity null", q(entity=None), "entity", "entity name"),
    ("entity number", q(entity=5), "entity", "entity name"),
    ("entity array", q(entity=["tasks"]), "entity", "entity name"),
    ("entity newline", q(entity="tasks\n"), "entity", "entity name"),
    # limit
    ("limit 0", q(limit=0), "limit", "1 to 1000"),
    ("limit 1001", q(limit=1001), "limit", "1 to 1000"),
    ("limit -1", q(limit=-1), "limit", "1 to 1000"),
    ("limit string", q(limit="5"), "limit", "integer"),
    ("limit true", q(limit=True), "limit", "integer"),
    ("limit float", q(limit=5.0), "limit", "integer"),
    ("limit array", q(limit=[5]), "limit", "integer"),
    ("limit missing in window mode", q(limit=DROP), "limit", "window"),
    ("limit null in window mode", q(limit=None), "limit", "window"),
    ("limit 0 in changes mode", q(limit=0, mode="changes"), "limit", "1 to 1000"),
    # mode
    ("mode live", q(mode="live"), "mode", "window"),
    ("mode case", q(mode="Window"), "mode", "window"),
    ("mode null", q(mode=None), "mode", "window"),
    ("mode number", q(mode=1), "mode", "window"),
    ("mode array", q(mode=["window"]), "mode", "window"),
    # sort
    ("sort string", q(sort="a"), "sort", "array"),
    ("sort object", q(sort={"a": 1}), "sort", "array"),
    ("sort number entry", q(sort=[1]), "sort[0]", "string"),
    ("sort null entry", q(sort=["a", None]), "sort[1]", "string"),
    ("sort array entry", q(sort=[["a"]]), "sort[0]", "string"),
    ("sort empty column", q(sort=[""]), "sort[0]", "non-empty"),
    ("sort bare minus", q(sort=["-"]), "sort[0]", "non-empty"),
    ("sort duplicate", q(sort=["a", "b", "a"]), "sort[2]", "twice"),
    ("sort duplicate other way", q(sort=["a", "-a"]), "sort[1]", "twice"),
    ("sort duplicate path", q(sort=["-a.b", "a.b"]), "sort[1]", "twice"),
    ("sort $x", q(sort=["$x"]), "sort[0]", "$x"),
    ("sort -$x", q(sort=["-$x"]), "sort[0]", "$x"),
    ("sort a.$x", q(sort=["a.$x"]), "sort[0]", "$x"),
    ("sort empty segment", q(sort=["a..b"]), "sort[0]", "empty"),
    ("sort too many", q(sort=[f"c{i}" for i in range(9)]), "sort", "at most 8"),
    # after
    ("after in changes mode", q(mode="changes", sort=["a"], after=_cursor()), "after",
     "changes"),
    ("after number", q(sort=["a"], after=5), "after", "string"),
    ("after empty", q(sort=["a"], after=""), "after", "string"),
    ("after garbage", q(sort=["a"], after="garbage"), "after", "cursor"),
    ("after of another sort", q(sort=["-a"], after=_cursor()), "after", "another"),
]


@pytest.mark.parametrize(
    ("query", "part", "fragment"),
    [pytest.param(query, part, fragment, id=name) for name, query, part, fragment in INVALID],
)
def test_invalid_query_is_refused_naming_its_part(query: Any, part: str, fragment: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_query(query, signer=SIGNER)
    err = info.value
    assert err.code == "invalid_query"
    assert err.part, "every invalid_query names the part at fault"
    assert err.part == part
    message = str(err)
    assert message.startswith(f"{part}: ") if part else message
    assert fragment in message


def test_mode_is_refused_where_not_allowed() -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_query(q(mode="window"), signer=None, allow_mode=False)
    assert info.value.part == "mode"


def test_entity_is_refused_when_it_comes_from_the_path() -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_query(q(), signer=None, entity="tasks")
    assert info.value.part == "entity"
    with pytest.raises(InvalidQuery) as info:
        parse_query({"limit": 1}, signer=None, entity="bad-name")
    assert info.value.part == "entity"


# -- valid queries that must be accepted ---------------------------------------------------


def test_changes_mode_limit_defaults_to_the_maximum() -> None:
    query = parse_query({"entity": "tasks", "mode": "changes"}, signer=None)
    assert query.mode is Mode.CHANGES
    assert query.limit == 1000
    assert parse_query(q(limit=5, mode="changes"), signer=None).limit == 5


def test_defaults() -> None:
    query = parse_query({"entity": "tasks", "limit": 1}, signer=None)
    assert query.mode is Mode.WINDOW
    assert query.sort == () and query.sort_spec == ""
    assert query.after is None and query.position is None
    assert query.matches({}) and query.matches({"a": 1})
    nulls = parse_query(q(where=None, sort=None, after=None), signer=None)
    assert nulls.matches({"x": 1}) and nulls.sort == ()


VALID: list[tuple[str, dict[str, Any]]] = [
    ("limit 1", q(limit=1)),
    ("limit 1000", q(limit=1000)),
    ("entity underscore", q(entity="_")),
    ("entity upper", q(entity="A")),
    ("entity 64 chars", q(entity="a" * 64)),
    ("entity _9", q(entity="_9")),
    ("depth 8 by $and", w(nested_and(8))),
    ("depth 8 by $not", w(nested_top_not(8))),
    ("depth 8 by field $not", w(nested_field_not(8))),
    ("64 fields", w({f"f{i}": i for i in range(64)})),
    ("64 operators", w({"$or": [{f"f{i}": {"$gt": 0, "$lt": 9}} for i in range(32)]})),
    ("1000 $in values", w({"a": {"$in": list(range(1000))}})),
    ("empty $in", w({"a": {"$in": []}})),
    ("$in of every scalar", w({"a": {"$in": [None, True, 1, 1.5, "x"]}})),
    ("equality to an object", w({"a": {"b": 1}})),
    ("equality to an empty object", w({"a": {}})),
    ("equality to an array", w({"a": [1, {"b": 2}]})),
    ("$eq of an object with $ keys", w({"a": {"$eq": {"$gt": 1}}})),
    ("$contains object", w({"a": {"$contains": {"b": 1}}})),
    ("$gt of each kind", w({"a": {"$gt": 1}, "b": {"$gt": "x"}, "c": {"$gt": False}})),
    ("top $not", w({"$not": {"a": 1, "b": {"$gt": 2}}})),
    ("field $not", w({"a": {"$not": {"$in": [1, 2]}}})),
    ("dotted column", w({"a.b.c": 1})),
    ("unicode column", w({"t\u00e2che": 1})),
    ("sort of 8", q(sort=[f"c{i}" for i in range(8)])),
    ("sort dotted descending", q(sort=["-a.b", "a"])),
    ("after null in changes mode", q(mode="changes", after=None)),
    ("changes mode with sort", q(mode="changes", sort=["-a"])),
    ("a valid cursor", q(sort=["a"], after=_cursor())),
    ("largest integer", w({"a": 2**63 - 1, "b": {"$lt": 2**63 - 1}})),
    ("smallest integer", w({"a": -(2**63), "b": {"$in": [-(2**63), 2**63 - 1]}})),
    ("big floats stay floats", w({"a": 1.2345678901234568e22, "b": {"$gt": 1e300}})),
    ("integral floats", w({"a": float(2**63), "b": {"$lt": -0.0}})),
    ("128-deep value", w({"a": nested_array(127), "b": {"$contains": nested_object(128)}})),
]


@pytest.mark.parametrize("query", [pytest.param(v, id=name) for name, v in VALID])
def test_valid_query_is_accepted(query: dict[str, Any]) -> None:
    parsed = parse_query(query, signer=SIGNER)
    assert parsed.entity == query["entity"]
    assert parsed.to_json()["sort"] == (query.get("sort") or [])
    again = parse_query(parsed.to_json(), signer=SIGNER)
    assert again.shape == parsed.shape


def test_edge_values_are_kept_exactly() -> None:
    """2**63-1 and -2**63 are integers compared exactly; floats stay floats."""
    where = {"a": 2**63 - 1, "b": {"$gte": -(2**63)}, "c": 1.2345678901234568e22}
    query = parse_query(w(where), signer=None)
    assert query.where_json == where
    assert type(query.where_json["c"]) is float
    assert query.matches({"a": 2**63 - 1, "b": -(2**63), "c": 1.2345678901234568e22})
    assert not query.matches({"a": 2**63 - 2, "b": 0, "c": 1.2345678901234568e22})
    assert not query.matches({"a": float(2**63), "b": 0, "c": 1.2345678901234568e22})
    assert not query.matches({"a": 2**63 - 1, "b": 0, "c": 12345678901234567890123})


def test_configured_limits_are_honoured() -> None:
    limits = QueryLimits(max_limit=50, max_depth=2, max_conditions=3, max_in=4, max_sort=1,
                         max_cursor_bytes=30)

    def refused(query: dict[str, Any]) -> str:
        with pytest.raises(InvalidQuery) as info:
            parse_query(query, signer=SIGNER, limits=limits)
        return info.value.part

    def accepted(query: dict[str, Any]) -> None:
        parse_query(query, signer=SIGNER, limits=limits)

    accepted(q(limit=50))
    assert refused(q(limit=51)) == "limit"
    assert parse_query({"entity": "t", "mode": "changes"}, signer=None, limits=limits).limit == 50
    accepted(w(nested_and(2)))
    assert refused(w(nested_and(3))).startswith("where.$and[0]")
    accepted(w({"a": 1, "b": 2, "c": 3}))
    assert refused(w({"a": 1, "b": 2, "c": 3, "d": 4})) == "where.d"
    accepted(w({"a": {"$in": [1, 2, 3, 4]}}))
    assert refused(w({"a": {"$nin": [1, 2, 3, 4, 5]}})) == "where.a.$nin"
    accepted(q(sort=["a"]))
    assert refused(q(sort=["a", "b"])) == "sort"
    assert len(_cursor()) > 30
    assert refused(q(sort=["a"], after=_cursor())) == "after"
