"""The DARTS cell genotype: an immutable, validated value with the reference text form and JSON.

Compatible with DARTS cnn/genotypes.py, where
``Genotype = namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')``.
``normal``/``reduce`` hold ``(op_name, input_index)`` pairs, two per intermediate node; states 0 and 1
are the outputs of the two previous cells and intermediate node i (0-based) is state i + 2, so pair k
(node k // 2) may read states 0..k // 2 + 1. ``*_concat`` names the states concatenated into the cell
output (DARTS cnn/model.py Cell), each in 2..num_nodes + 1.

Text is parsed with ``ast`` and a whitelist of literal forms; it is never evaluated.
"""

from __future__ import annotations

import ast
import numbers
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from search_spaces.darts.ops import OPS

Pair = tuple[str, int]
Concat = tuple[int, ...] | range

_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_PAIR_FIELDS = ("normal", "reduce")


def _is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (numpy ints included) but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_pairs(name: str, pairs: Any) -> tuple[Pair, ...]:
    """Validated ``(op_name, input_index)`` pairs of one cell, as an immutable tuple."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise ValueError(f"{name} must be a list of (op_name, input_index) pairs, got {type(pairs).__name__}")
    if len(pairs) == 0 or len(pairs) % 2:
        raise ValueError(f"{name} must have an even, non-zero number of (op_name, input_index) pairs "
                         f"(two per intermediate node), got {len(pairs)}")
    checked = []
    for k, pair in enumerate(pairs):
        where = f"{name}[{k}]"
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"{where} must be an (op_name, input_index) pair, got {pair!r}")
        op, index = pair
        if not isinstance(op, str) or op not in OPS:
            raise ValueError(f"unknown op {op!r} in {where}; valid: {', '.join(OPS)}")
        node = k // 2
        if not _is_int(index) or not 0 <= index <= node + 1:
            raise ValueError(f"bad input index {index!r} in {where}: intermediate node {node} "
                             f"may read states 0..{node + 1}")
        checked.append((str(op), int(index)))
    return tuple(checked)


def _check_concat(name: str, concat: Any, num_nodes: int) -> Concat:
    """Validated concat indices: a step-1 ``range`` is kept as is, a list/tuple becomes a tuple."""
    last = num_nodes + 1
    if isinstance(concat, range):
        # Checked through its bounds so that a huge range costs nothing to reject.
        if concat.step != 1 or concat.stop <= concat.start or concat.start < 2 or concat.stop - 1 > last:
            raise ValueError(f"{name}={concat!r} is not a non-empty step-1 range within "
                             f"2..{last} ({num_nodes} intermediate nodes)")
        return concat
    if not isinstance(concat, (list, tuple)):
        raise ValueError(f"{name} must be a list of node indices or a range, got {type(concat).__name__}")
    if len(concat) == 0:
        raise ValueError(f"{name} must name at least one node")
    for value in concat:
        if not _is_int(value) or not 2 <= value <= last:
            raise ValueError(f"{name} index {value!r} out of range: valid node indices are "
                             f"2..{last} ({num_nodes} intermediate nodes)")
    if len(set(concat)) != len(concat):
        raise ValueError(f"{name} repeats a node index: {list(concat)}")
    return tuple(int(value) for value in concat)


def _concat_text(concat: Concat) -> str:
    """The concat as the reference prints it: ``range(2, 6)`` for a range, else a list."""
    return repr(concat) if isinstance(concat, range) else repr(list(concat))


class Genotype(namedtuple("_GenotypeFields", _FIELDS)):
    """A DARTS cell pair, immutable and validated when built; a drop-in for the reference namedtuple.

    Args:
        normal: ``(op_name, input_index)`` pairs of the normal cell, two per intermediate node.
        normal_concat: states concatenated into the normal cell's output (list/tuple or ``range``).
        reduce: pairs of the reduction cell.
        reduce_concat: states concatenated into the reduction cell's output.

    Pairs are stored as tuples and a list/tuple concat as a tuple; ``repr`` prints the reference form
    (lists, or ``range(a, b)`` for a range concat). Equality and hashing ignore the concat's form.
    """

    __slots__ = ()

    def __new__(cls, normal: Sequence[Pair], normal_concat: Sequence[int] | range,
                reduce: Sequence[Pair], reduce_concat: Sequence[int] | range) -> Genotype:
        normal = _check_pairs("normal", normal)
        reduce = _check_pairs("reduce", reduce)
        normal_concat = _check_concat("normal_concat", normal_concat, len(normal) // 2)
        reduce_concat = _check_concat("reduce_concat", reduce_concat, len(reduce) // 2)
        return super().__new__(cls, normal, normal_concat, reduce, reduce_concat)

    @classmethod
    def _make(cls, iterable: Any) -> Genotype:
        """Build from an iterable of the four fields (validated, so ``_replace`` is too)."""
        return cls(*iterable)

    def _key(self) -> tuple:
        """The fields with concats as tuples: what equality and hashing compare."""
        return (self.normal, tuple(self.normal_concat), self.reduce, tuple(self.reduce_concat))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Genotype):
            return NotImplemented
        return self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Genotype(normal={list(self.normal)!r}, normal_concat={_concat_text(self.normal_concat)}, "
                f"reduce={list(self.reduce)!r}, reduce_concat={_concat_text(self.reduce_concat)})")

    __str__ = __repr__

    def to_json(self) -> dict[str, list]:
        """JSON-ready dict: pairs as ``[op, index]`` lists, concats as lists of ints."""
        return {
            "normal": [[op, index] for op, index in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, index] for op, index in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Genotype:
        """The genotype of a ``to_json`` dict, validated like the constructor."""
        if not isinstance(data, dict):
            raise ValueError(f"genotype JSON must be an object with keys {', '.join(_FIELDS)}, "
                             f"got {type(data).__name__}")
        missing = [field for field in _FIELDS if field not in data]
        unexpected = sorted(str(key) for key in data if key not in _FIELDS)
        if missing or unexpected:
            raise ValueError(f"genotype JSON must have exactly the keys {', '.join(_FIELDS)}; "
                             f"missing: {missing}, unexpected: {unexpected}")
        return cls(**{field: data[field] for field in _FIELDS})


def _snippet(node: ast.AST, limit: int = 60) -> str:
    """Source text of an AST node for error messages, shortened to ``limit`` characters."""
    text = ast.unparse(node)
    return f"`{text if len(text) <= limit else text[:limit - 3] + '...'}`"


def _literal(node: ast.expr, kind: type, what: str) -> Any:
    """The value of a ``str`` or ``int`` literal node; anything else (names, calls, ``-1``) is refused."""
    if isinstance(node, ast.Constant) and type(node.value) is kind:
        return node.value
    article = "an" if kind is int else "a"
    raise ValueError(f"{what}: expected {article} {kind.__name__} literal, got {_snippet(node)}")


def _literal_pairs(name: str, node: ast.expr) -> list[Pair]:
    """The pairs of a list/tuple of ``('op', index)`` literals."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        raise ValueError(f"{name}: expected a list of (op_name, input_index) pairs, got {_snippet(node)}")
    pairs = []
    for k, item in enumerate(node.elts):
        if not (isinstance(item, (ast.Tuple, ast.List)) and len(item.elts) == 2):
            raise ValueError(f"{name}[{k}]: expected a pair (op_name, input_index), got {_snippet(item)}")
        op, index = item.elts
        pairs.append((_literal(op, str, f"{name}[{k}] op name"), _literal(index, int, f"{name}[{k}] input index")))
    return pairs


def _literal_concat(name: str, node: ast.expr) -> list[int] | range:
    """The indices of a list/tuple of int literals, or of ``range(a, b)`` with int literals."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(item, int, f"{name}[{k}]") for k, item in enumerate(node.elts)]
    is_range = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
    if is_range and len(node.args) == 2 and not node.keywords:
        start, stop = (_literal(arg, int, f"{name} range bound") for arg in node.args)
        return range(start, stop)
    raise ValueError(f"{name}: expected a list of node indices or range(a, b), got {_snippet(node)}")


def _call_fields(call: ast.Call) -> dict[str, ast.expr]:
    """The four field nodes of a ``Genotype(...)`` call, given positionally or by keyword."""
    if len(call.args) > len(_FIELDS):
        raise ValueError(f"Genotype(...) takes at most {len(_FIELDS)} positional arguments, got {len(call.args)}")
    fields: dict[str, ast.expr] = {}
    for field, node in zip(_FIELDS, call.args):
        if isinstance(node, ast.Starred):
            raise ValueError(f"Genotype(...) does not accept *arguments, got {_snippet(node)}")
        fields[field] = node
    for keyword in call.keywords:
        if keyword.arg is None:
            raise ValueError(f"Genotype(...) does not accept **arguments, got {_snippet(keyword.value)}")
        if keyword.arg not in _FIELDS:
            raise ValueError(f"unknown field {keyword.arg!r} in Genotype(...); valid: {', '.join(_FIELDS)}")
        if keyword.arg in fields:
            raise ValueError(f"field {keyword.arg!r} given twice in Genotype(...)")
        fields[keyword.arg] = keyword.value
    missing = [field for field in _FIELDS if field not in fields]
    if missing:
        raise ValueError(f"Genotype(...) is missing {', '.join(missing)}")
    return fields


def parse_genotype(text: str) -> Genotype:
    """The genotype of its reference text form ``Genotype(normal=[...], normal_concat=..., ...)``.

    Accepts positional or keyword fields, lists/tuples of ``('op', index)`` literals, and concats as
    lists/tuples of ints or ``range(a, b)``; surrounding whitespace is ignored. Never evaluates code:
    any other expression raises ``ValueError`` saying what was expected.
    """
    if not isinstance(text, str):
        raise ValueError(f"genotype text must be a str, got {type(text).__name__}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"syntax error at line {err.lineno}, column {err.offset}: {err.msg}") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise ValueError(f"expected Genotype(...) but got {_snippet(call)}")
    fields = _call_fields(call)
    values = {field: (_literal_pairs if field in _PAIR_FIELDS else _literal_concat)(field, node)
              for field, node in fields.items()}
    return Genotype(**values)
