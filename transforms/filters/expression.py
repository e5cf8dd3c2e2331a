"""``expression``: keep rows for which a boolean expression over their columns holds.

The expression is Python syntax, parsed with ``ast`` and compiled to vectorised Arrow
compute over the whole batch; only a whitelist of nodes is allowed, so a config can never
run code. Nulls follow SQL: comparisons with null are null, ``and``/``or``/``not`` use
three-valued logic, and a row whose result is null is removed.

Supported: columns by name, numbers, strings, True/False/None, ``== != < <= > >=``
(chains too), ``and or not``, ``in``/``not in`` a list, ``is None``/``is not None``,
``+ - * / %``, ``now`` (the run time), and the functions ``duration('7d')``,
``lower(x)``, ``upper(x)``, ``abs(x)``, ``coalesce(x, y, ...)``, ``isnull(x)``.
Example: ``trust_score >= 0.3 and not opted_out and released_at >= now - duration('7d')``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ceap import arrow
from ceap.durations import parse_duration
from ceap.errors import ConfigError
from ceap.plugins import filters
from transforms.filters.base import Filter, Verdict, value_set

_COMPARE: dict[type, Callable] = {
    ast.Eq: pc.equal, ast.NotEq: pc.not_equal, ast.Lt: pc.less, ast.LtE: pc.less_equal,
    ast.Gt: pc.greater, ast.GtE: pc.greater_equal,
}  # fmt: skip


def _arrow(value: Any) -> Any:
    return value if isinstance(value, pa.Array | pa.ChunkedArray | pa.Scalar) else pa.scalar(value)


def _is_int(value: Any) -> bool:
    return pa.types.is_integer(value.type)


def _nonzero(value: Any) -> Any:
    """The divisor with zeros as null: ``x / 0`` and ``x % 0`` are null (so removed), as in
    DuckDB, instead of an Arrow error that would fail the whole batch."""
    return pc.if_else(pc.equal(value, 0), pa.scalar(None, value.type), value)


def _divide(a: Any, b: Any) -> Any:
    """Python's true division: Arrow's integer divide would truncate ``7 / 2`` to 3."""
    a, b = _arrow(a), _arrow(b)
    a = pc.cast(a, pa.float64()) if _is_int(a) else a
    b = pc.cast(b, pa.float64()) if _is_int(b) else b
    return pc.divide(a, _nonzero(b))


def _modulo(a: Any, b: Any) -> Any:
    """Python's floored modulo: the result has the divisor's sign, ``-7 % 2 == 1``."""
    a, b = _arrow(a), _nonzero(_arrow(b))
    if _is_int(a) and _is_int(b):
        rest = pc.subtract(a, pc.multiply(pc.divide(a, b), b))  # Arrow truncates ints
        flip = pc.and_(pc.not_equal(rest, 0), pc.not_equal(pc.less(rest, 0), pc.less(b, 0)))
        return pc.if_else(flip, pc.add(rest, b), rest)
    return pc.subtract(a, pc.multiply(pc.floor(pc.divide(a, b)), b))


_ARITH: dict[type, Callable] = {
    ast.Add: pc.add, ast.Sub: pc.subtract, ast.Mult: pc.multiply, ast.Div: _divide,
    ast.Mod: _modulo,
}  # fmt: skip
_PY_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
             ast.Div: operator.truediv, ast.Mod: operator.mod}  # fmt: skip


MAX_TEXT = 4_096
"""Characters of an expression: a filter is a line, not a program."""
MAX_NODES = 1_000
MAX_DEPTH = 64
MAX_CONSTANT = 10_000
"""Characters (or items) of a constant folded from constants (``'x' * 100``)."""
MAX_INTEGER = 2**63
"""Magnitude of an integer folded from constants: Arrow's int64 holds no more."""


def _fold(op: ast.operator, left: Any, right: Any) -> Any:
    """Python arithmetic on two constants, refused before it builds something huge
    (``'x' * 100000 * 100000`` would allocate 10 GB per batch) or a number past int64."""
    if isinstance(op, ast.Mult | ast.Add):
        sizes = [len(v) for v in (left, right) if isinstance(v, str | list | tuple)]
        counts = [v for v in (left, right) if isinstance(v, int) and not isinstance(v, bool)]
        size = sizes[0] * max(counts[0], 0) if len(sizes) == 1 and counts else sum(sizes)
        if size > MAX_CONSTANT:
            raise ValueError(
                f"a constant of {size:,} characters or items; at most {MAX_CONSTANT:,}"
            )
    value = _PY_ARITH[type(op)](left, right)
    if isinstance(value, int) and abs(value) > MAX_INTEGER:
        raise ValueError(f"a constant past {MAX_INTEGER:,} (int64)")
    return value


def _depth(node: ast.AST) -> int:
    deepest, stack = 0, [(node, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack += [(child, depth + 1) for child in ast.iter_child_nodes(node)]
    return deepest


class Expression:
    """A compiled expression: ``evaluate(batch) -> BooleanArray`` (may contain nulls).

    Bounded at load, since configs come from other teams: ``MAX_TEXT`` characters,
    ``MAX_NODES`` syntax nodes nested at most ``MAX_DEPTH`` deep, and constants folded
    from constants within ``MAX_CONSTANT`` / ``MAX_INTEGER``."""

    def __init__(self, text: str) -> None:
        self.text = text
        if len(text) > MAX_TEXT:
            raise ValueError(f"{len(text):,} characters; an expression may have {MAX_TEXT:,}")
        try:
            self._tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ValueError(f"not a valid expression: {exc.msg} at column {exc.offset}") from None
        except (RecursionError, MemoryError):
            raise ValueError("nested too deeply") from None
        nodes = sum(1 for _ in ast.walk(self._tree))
        if nodes > MAX_NODES:
            raise ValueError(f"{nodes:,} terms; an expression may have {MAX_NODES:,}")
        if _depth(self._tree) > MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} deep")
        self.columns: set[str] = set()
        self._check(self._tree)
        _Constants().visit(self._tree)

    def _check(self, node: ast.AST) -> None:
        allowed = (
            ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Compare,
            ast.BinOp, ast.Name, ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Call, ast.Load,
            *_COMPARE, *_ARITH, ast.In, ast.NotIn, ast.Is, ast.IsNot,
        )  # fmt: skip
        for child in ast.walk(node):
            if not isinstance(child, allowed):
                raise ValueError(f"{type(child).__name__} is not allowed in a filter expression")
            if isinstance(child, ast.Call) and (
                not isinstance(child.func, ast.Name)
                or child.func.id not in _FUNCTIONS
                or child.keywords
            ):
                name = getattr(child.func, "id", ast.unparse(child.func))
                raise ValueError(
                    f"unknown function {name!r}; known: {', '.join(sorted(_FUNCTIONS))}"
                )
            if isinstance(child, ast.Name) and child.id not in ("now", "True", "False", "None"):
                self.columns.add(child.id)
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            for arg in call.args:
                if isinstance(arg, ast.Name):
                    self.columns.add(arg.id)
            self.columns.discard(call.func.id)

    def evaluate(self, batch: pa.RecordBatch, now: Any) -> pa.Array:
        missing = sorted(c for c in self.columns if c not in batch.schema.names)
        if missing:
            raise ConfigError(
                f"expression {self.text!r}: no column(s) {missing} on the candidate; "
                f"available: {', '.join(n for n in batch.schema.names if not n.startswith('_ceap_'))}"
            )
        try:
            result = _Eval(batch, now).visit(self._tree)
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            # e.g. a text column compared with a number: Arrow's kernel error names no column
            types = ", ".join(f"{c}: {batch.schema.field(c).type}" for c in sorted(self.columns))
            raise ConfigError(
                f"expression {self.text!r}: the column types do not fit the operation "
                f"({types}): {str(exc).splitlines()[0]}"
            ) from exc
        if not isinstance(result, pa.Array | pa.ChunkedArray):
            result = pa.array([result] * batch.num_rows, pa.bool_())
        if not pa.types.is_boolean(result.type):
            raise ConfigError(f"expression {self.text!r} is not a boolean (it gives {result.type})")
        return result


class _Eval(ast.NodeVisitor):
    def __init__(self, batch: pa.RecordBatch, now: Any) -> None:
        self.batch = batch
        self.now = now

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id == "now":
            return pa.scalar(self.now, pa.timestamp("us", tz="UTC"))
        return self.batch.column(node.id)

    def visit_List(self, node: ast.List) -> list:
        return [self.visit(e) for e in node.elts]

    visit_Tuple = visit_Set = visit_List

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        fn = pc.and_kleene if isinstance(node.op, ast.And) else pc.or_kleene
        values = [_as_bool(self.visit(v)) for v in node.values]
        out = values[0]
        for v in values[1:]:
            out = fn(out, v)
        return out

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            value = _as_bool(value)
            return not value if isinstance(value, bool) else pc.invert(value)  # null stays null
        if isinstance(node.op, ast.USub):
            return None if value is None else pc.negate(value) if _is_array(value) else -value
        return value

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.visit(node.left), self.visit(node.right)
        if left is None or right is None:
            return None
        if not any(isinstance(v, pa.Array | pa.ChunkedArray | pa.Scalar) for v in (left, right)):
            try:
                return _fold(node.op, left, right)
            except ZeroDivisionError:
                return None
        left, right = _utc(left), _utc(right)
        return _ARITH[type(node.op)](left, right)

    def visit_Compare(self, node: ast.Compare) -> Any:
        out = None
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.visit(comparator)
            if isinstance(op, ast.In | ast.NotIn):
                if not isinstance(right, list):
                    raise ConfigError(
                        "`in` needs a list of values, e.g. region in ['eu-west', 'us-east']"
                    )
                if _is_array(left):
                    column, values = value_set(left, right)
                    hit = pc.is_in(column, value_set=values)
                    hit = pc.if_else(pc.is_null(left), pa.scalar(None, pa.bool_()), hit)
                else:
                    hit = left in right
                step = pc.invert(hit) if isinstance(op, ast.NotIn) else hit
            elif isinstance(op, ast.Is | ast.IsNot):
                if right is not None:
                    raise ConfigError("`is` compares with None only (x is None, x is not None)")
                step = pc.is_null(left) if isinstance(op, ast.Is) else pc.is_valid(left)
            else:
                step = (
                    pa.scalar(None, pa.bool_())
                    if left is None or right is None
                    else _COMPARE[type(op)](_utc(left), _utc(right))
                )
            out = step if out is None else pc.and_kleene(out, step)
            left = right
        return out

    def visit_Call(self, node: ast.Call) -> Any:
        return _FUNCTIONS[node.func.id](*[self.visit(a) for a in node.args])


class _Constants(ast.NodeVisitor):
    """Folds the constant parts at load, as evaluation would, so a constant too large is a
    config error (naming the expression) rather than a worker out of memory."""

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_List(self, node: ast.List) -> Any:
        values = [self.visit(e) for e in node.elts]
        return None if any(v is _UNKNOWN for v in values) else values

    visit_Tuple = visit_Set = visit_List

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.USub) and isinstance(value, int | float):
            return -value
        return _UNKNOWN

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.visit(node.left), self.visit(node.right)
        if _UNKNOWN in (left, right) or left is None or right is None:
            return _UNKNOWN
        try:
            return _fold(node.op, left, right)
        except (ZeroDivisionError, TypeError):
            return _UNKNOWN  # as at run time: null, or Arrow's error naming the types

    def generic_visit(self, node: ast.AST) -> Any:
        super().generic_visit(node)
        return _UNKNOWN


_UNKNOWN = object()
"""Not a constant: depends on a column, ``now`` or a function."""


def _is_array(value: Any) -> bool:
    return isinstance(value, pa.Array | pa.ChunkedArray)


def _utc(value: Any) -> Any:
    """Time columns as timestamp[us, UTC] (naive ones taken as UTC, dates at midnight), so
    they compare with ``now`` whatever unit or zone the source wrote them in."""
    temporal = _is_array(value) and (
        pa.types.is_timestamp(value.type) or pa.types.is_date(value.type)
    )
    return arrow.to_utc(value)[0] if temporal and value.type != arrow.UTC_US else value


def _as_bool(value: Any) -> Any:
    if value is None:
        return pa.scalar(None, pa.bool_())
    if _is_array(value) and not pa.types.is_boolean(value.type):
        raise ConfigError(f"a {value.type} column is used as a condition; compare it with a value")
    return value


def _duration(text: str) -> pa.Scalar:
    return pa.scalar(parse_duration(text), pa.duration("us"))


def _coalesce(*values: Any) -> Any:
    return pc.coalesce(*values)


_FUNCTIONS: dict[str, Callable] = {
    "duration": _duration, "lower": pc.utf8_lower, "upper": pc.utf8_upper, "abs": pc.abs,
    "coalesce": _coalesce, "isnull": pc.is_null,
}  # fmt: skip


class ExpressionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: str = Field(min_length=1)
    """Rows for which this holds stay; others are removed (reason: the expression)."""
    reason: str | None = None
    """Reason recorded for removed rows (default: ``not (<keep>)``)."""

    @field_validator("keep")
    @classmethod
    def _compiles(cls, value: str) -> str:
        Expression(value)
        return value


@filters.register("expression")
class ExpressionFilter(Filter):
    Options = ExpressionOptions
    sees_removed_rows = True  # row by row

    def setup(self) -> None:
        self._expr = Expression(self.options.keep)

    def reads(self) -> set[str]:
        return Expression(self.options.keep).columns

    def evaluate(self, batch: pa.RecordBatch) -> Verdict:
        if not hasattr(self, "_expr"):
            self.setup()
        keep = self._expr.evaluate(batch, self.context.current())
        return Verdict(keep, self.options.reason or f"not ({self.options.keep})")
