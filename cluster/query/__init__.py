"""The query language of PROTOCOL.md section 2: parse, validate, compile, order, cursors."""

from ._ast import Cmp, Logic, Node
from ._compile import Predicate, compile_filter, equals_to
from ._cursor import CursorSigner
from ._model import ENTITY_MAX, Mode, Query, check_entity, parse_query
from ._order import SortColumn, SortKey, encode_id, encode_value, make_sort_key
from ._page import QueryPage, QueryRow, Ranked, page_of
from ._values import MISSING, canonical, resolve

__all__ = [
    "ENTITY_MAX",
    "MISSING",
    "Cmp",
    "CursorSigner",
    "Logic",
    "Mode",
    "Node",
    "Predicate",
    "Query",
    "QueryPage",
    "QueryRow",
    "Ranked",
    "SortColumn",
    "SortKey",
    "canonical",
    "check_entity",
    "compile_filter",
    "encode_id",
    "encode_value",
    "equals_to",
    "make_sort_key",
    "page_of",
    "parse_query",
    "resolve",
]
