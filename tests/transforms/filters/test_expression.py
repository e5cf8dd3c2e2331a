"""The ``expression`` filter language (see transforms/filters/expression.py): vectorised Arrow
evaluation checked by hand and, with hypothesis, against a row-by-row Python interpreter
with SQL's null semantics."""

from __future__ import annotations

import operator
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ceap.context import RunContext
from ceap.errors import ConfigError
from configs.schema import parse_program, read_yaml
from tests.conftest import NOW
from transforms.filters.expression import Expression, ExpressionFilter

BATCH = pa.RecordBatch.from_pydict(
    {
        "n": pa.array([7, -7, 4, None, 0], pa.int64()),
        "d": pa.array([2, 2, 0, 1, 3], pa.int64()),
        "x": pa.array([1.5, None, 2.0, 3.0, -0.5]),
        "s": pa.array(["Eu", "us", None, "1", "eu"]),
        "code": pa.array(["1", "2", "3", None, "01"]),
        "ok": pa.array([True, None, False, True, None]),
        "at": pa.array(
            [NOW - timedelta(days=1), NOW - timedelta(days=30), None, NOW, NOW - timedelta(days=7)],
            pa.timestamp("us", tz="UTC"),
        ),
    }
)


def ev(text: str, batch: pa.RecordBatch = BATCH) -> list:
    return Expression(text).evaluate(batch, NOW).to_pylist()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n > 0", [True, False, True, None, False]),
        ("n == 7", [True, False, False, None, False]),
        ("n != 7", [False, True, True, None, True]),
        ("0 <= n < 7", [False, False, True, None, True]),
        ("d < n <= 7", [True, False, True, None, False]),
        ("s == 'eu'", [False, False, None, False, True]),
        ("s >= 'a'", [False, True, None, False, True]),
        # three-valued logic: false and null = false, true or null = true, not null = null
        ("ok and n > 0", [True, False, False, None, False]),
        ("ok or n > 0", [True, None, True, True, None]),
        ("not ok", [False, None, True, False, None]),
        ("not (n > 0) or ok", [True, True, False, True, True]),
        ("ok is None", [False, True, False, False, True]),
        ("x is not None", [True, False, True, True, True]),
        ("isnull(s)", [False, False, True, False, False]),
        ("s in ['eu', 'us']", [False, True, None, False, True]),
        ("s not in ['eu', 'us']", [True, False, None, True, False]),
        ("n in (7, 0)", [True, False, False, None, True]),
        ("code in [1, 2]", [True, True, False, None, False]),  # ints vs a text column
        ("n in ['7', 4]", [True, False, True, None, False]),  # text vs an integer column
        ("n in [7, 1.5]", [True, False, False, None, False]),
        ("n + d == 9", [True, False, False, None, False]),
        ("n - d * 2 == 3", [True, False, False, None, False]),
        ("n / d == 3.5", [True, False, None, None, False]),  # true division; / 0 is null
        ("n % d == 1", [True, True, None, None, False]),  # floored, like Python: -7 % 2 == 1
        ("-n < 0", [True, False, True, None, False]),
        ("x * 2 > 3", [False, None, True, True, False]),
        ("abs(n) == 7", [True, True, False, None, False]),
        ("lower(s) == 'eu'", [True, False, None, False, True]),
        ("upper(s) == 'US'", [False, True, None, False, False]),
        ("coalesce(x, 0) >= 0", [True, True, True, True, False]),
        ("coalesce(ok, False)", [True, False, False, True, False]),
        ("at >= now - duration('7d')", [True, False, None, True, True]),
        ("at < now - duration('1h30m')", [True, True, None, False, True]),
        ("True", [True] * 5),
        ("1 > 2", [False] * 5),
        ("not (1 > 2)", [True] * 5),
        ("1 / 0 == 1", [None] * 5),
    ],
)
def test_semantics(text, expected):
    assert ev(text) == expected


def test_times_in_any_unit_or_zone_compare_with_now():
    naive = [datetime(2024, 2, 29, 12), datetime(2024, 2, 1), None]
    batch = pa.RecordBatch.from_pydict(
        {
            "ns": pa.array(naive, pa.timestamp("ns")),
            "paris": pa.array(naive, pa.timestamp("ms", tz="Europe/Paris")),
            "day": pa.array([d.date() if d else None for d in naive], pa.date32()),
        }
    )
    assert ev("ns >= now - duration('7d')", batch) == [True, False, None]
    assert ev("paris >= now - duration('7d')", batch) == [True, False, None]
    assert ev("day >= now - duration('7d')", batch) == [True, False, None]


def test_filter_keeps_true_rows_and_removes_false_and_null_with_the_reason():
    f = ExpressionFilter({"keep": "n > 0"}, RunContext(program="p", now=NOW))
    kept, removed, reasons = f.split(BATCH)
    assert kept.column("n").to_pylist() == [7, 4]
    assert removed.column("n").to_pylist() == [-7, None, 0]
    assert reasons.to_pylist() == ["not (n > 0)"] * 3

    f = ExpressionFilter({"keep": "n > 0", "reason": "negative"}, RunContext(program="p", now=NOW))
    assert set(f.split(BATCH)[2].to_pylist()) == {"negative"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("n.real > 0", "Attribute is not allowed"),
        ("(lambda: 1)()", "Lambda is not allowed|unknown function"),
        ("[f for f in (lambda: 1,)]", "not allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('true')", "unknown function"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("len(s) > 1", "unknown function 'len'; known: abs, coalesce, duration"),
        ("lower(s=s) == 'a'", "unknown function 'lower'"),
        ("s[0] == 'a'", "Subscript is not allowed"),
        ("[c for c in s]", "ListComp is not allowed"),
        ("n > 0 if ok else n < 0", "IfExp is not allowed"),
        ("n := 1", "not a valid expression"),
        ("n >", "not a valid expression"),
    ],
)
def test_disallowed_syntax_fails_at_config_validation(text, message):
    with pytest.raises(ValueError, match=message):
        Expression(text)
    data = read_yaml("""
program: demo
action: review
subject_type: product
source: {type: parquet, options: {path: x}}
fields: {customer_id: customer_id, subject_id: product_id}
scoring: {models: [{id: m, type: column, options: {column: score}}]}
""")
    data["filters"] = [{"type": "dedup"}, {"type": "expression", "options": {"keep": text}}]
    with pytest.raises(ConfigError) as info:
        parse_program(data, "demo.yaml")
    assert "demo.yaml" in str(info.value)
    assert "filters[1].options.keep" in str(info.value)


def test_runtime_errors_name_the_expression():
    with pytest.raises(ConfigError, match=r"no column\(s\) \['missing'\]"):
        Expression("missing > 1").evaluate(BATCH, NOW)
    with pytest.raises(ConfigError, match="is not a boolean"):
        Expression("n + 1").evaluate(BATCH, NOW)
    with pytest.raises(ConfigError, match="int64 column is used as a condition"):
        Expression("n and ok").evaluate(BATCH, NOW)
    with pytest.raises(ConfigError, match="`in` needs a list"):
        Expression("n in d").evaluate(BATCH, NOW)


def test_columns_are_collected_without_function_names():
    assert Expression("lower(s) == 'a' and coalesce(x, n) > now - duration('1d')").columns == {
        "s",
        "x",
        "n",
    }


# --- fuzzing against a row-by-row reference -----------------------------------------------
#
# A strategy builds (text, fn, kind): the expression's source, a function of one row (a dict)
# giving the value under SQL null semantics, and its static type ("int", "float", "str",
# "bool", "time"), so only well-typed expressions are generated.

INTS = st.integers(-6, 6)  # small, so zero divisors and negative operands are common
FLOATS = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=64)
TEXTS = st.sampled_from(["a", "B", "ab", "", "Eu"])
NUMERIC = {"int": ["i", "j"], "float": ["f"]}


def _null_op(op):
    return lambda a, b: None if a is None or b is None else op(a, b)


def _div(a, b):
    return None if a is None or b is None or b == 0 else a / b


def _mod(a, b):
    return None if a is None or b is None or b == 0 else a % b


def _and(values):
    return False if False in values else (None if None in values else True)


def _or(values):
    return True if True in values else (None if None in values else False)


def _literal(value) -> str:
    return f"({value!r})" if isinstance(value, int | float) and value < 0 else repr(value)


@st.composite
def numeric(draw, depth: int = 2, kind: str | None = None):
    kind = kind or draw(st.sampled_from(["int", "float"]))
    choice = draw(st.sampled_from([0, 1, 2, 3, 3, 4, 4, 5, 6] if depth > 0 else [0, 0, 1]))
    if choice == 0:
        name = draw(st.sampled_from(NUMERIC[kind]))
        return name, (lambda r, c=name: r[c]), kind
    if choice == 1:
        value = draw(INTS if kind == "int" else FLOATS)
        return _literal(value), (lambda r, v=value: v), kind
    if choice == 2:  # + - *
        sym, op = draw(
            st.sampled_from([("+", operator.add), ("-", operator.sub), ("*", operator.mul)])
        )
        left = draw(numeric(depth - 1, kind))
        right = draw(numeric(depth - 1, draw(st.sampled_from(["int", kind]))))
        fn = _null_op(op)
        return (
            f"({left[0]} {sym} {right[0]})",
            lambda r, a=left[1], b=right[1]: fn(a(r), b(r)),
            kind,
        )
    if choice == 3 and kind == "float":  # true division gives floats; x / 0 is null
        left, right = draw(numeric(depth - 1)), draw(numeric(depth - 1))
        return (
            f"({left[0]} / {right[0]})",
            lambda r, a=left[1], b=right[1]: _div(a(r), b(r)),
            "float",
        )
    if choice in (3, 4) and kind == "int":  # floored modulo on integers
        left, right = draw(numeric(depth - 1, "int")), draw(numeric(depth - 1, "int"))
        return f"({left[0]} % {right[0]})", lambda r, a=left[1], b=right[1]: _mod(a(r), b(r)), "int"
    if choice == 5:
        inner = draw(numeric(depth - 1, kind))
        if draw(st.booleans()):
            return (
                f"abs({inner[0]})",
                lambda r, a=inner[1]: None if a(r) is None else abs(a(r)),
                kind,
            )
        return f"(-{inner[0]})", lambda r, a=inner[1]: None if a(r) is None else -a(r), kind
    name = draw(st.sampled_from(NUMERIC[kind]))
    value = draw(INTS if kind == "int" else FLOATS)
    return (
        f"coalesce({name}, {_literal(value)})",
        lambda r, c=name, v=value: v if r[c] is None else r[c],
        kind,
    )


@st.composite
def text(draw):
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return "s", lambda r: r["s"]
    if choice == 1:
        value = draw(TEXTS)
        return repr(value), lambda r, v=value: v
    fname, fn = ("lower", str.lower) if choice == 2 else ("upper", str.upper)
    return f"{fname}(s)", lambda r, f=fn: None if r["s"] is None else f(r["s"])


COMPARE = [
    ("==", operator.eq),
    ("!=", operator.ne),
    ("<", operator.lt),
    ("<=", operator.le),
    (">", operator.gt),
    (">=", operator.ge),
]


@st.composite
def condition(draw, depth: int = 2):
    # numeric comparisons are drawn most: arithmetic is where Arrow and Python differ most
    choice = draw(
        st.sampled_from([0, 1, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9][: 13 if depth > 0 else 10])
    )
    if choice == 0:
        return "b", lambda r: r["b"]
    if choice == 1:  # numeric comparison, sometimes chained
        operands = [draw(numeric(2)) for _ in range(draw(st.integers(2, 3)))]
        ops = [draw(st.sampled_from(COMPARE)) for _ in operands[1:]]
        src = operands[0][0] + "".join(
            f" {sym} {o[0]}" for (sym, _), o in zip(ops, operands[1:], strict=True)
        )

        def fn(r, operands=operands, ops=ops):
            values = [o[1](r) for o in operands]
            steps = [
                None if a is None or b is None else op(a, b)
                for (_, op), a, b in zip(ops, values, values[1:], strict=False)
            ]
            return _and(steps)

        return src, fn
    if choice == 2:
        (sym, op), left, right = draw(st.sampled_from(COMPARE)), draw(text()), draw(text())
        compare = _null_op(op)
        return f"{left[0]} {sym} {right[0]}", lambda r, a=left[1], b=right[1]: compare(a(r), b(r))
    if choice == 3:  # in / not in over a column
        negate = draw(st.booleans())
        column, kind = draw(
            st.sampled_from([("i", "int"), ("j", "int"), ("f", "float"), ("s", "str")])
        )
        pool = {"int": INTS, "float": st.one_of(FLOATS, INTS), "str": TEXTS}[kind]
        values = draw(st.lists(pool, min_size=1, max_size=4))
        src = f"{column} {'not in' if negate else 'in'} [{', '.join(map(repr, values))}]"
        return (
            src,
            lambda r, c=column, v=values, neg=negate: None if r[c] is None else (r[c] in v) != neg,
        )
    if choice == 4:  # is None / is not None / isnull()
        inner = draw(st.one_of(numeric(1), text().map(lambda t: (*t, "str"))))
        form = draw(st.sampled_from(["{} is None", "{} is not None", "isnull({})"]))
        want_null = "not" not in form
        return form.format(inner[0]), lambda r, a=inner[1], w=want_null: (a(r) is None) == w
    if choice == 5:  # times against now
        days = draw(st.integers(0, 40))
        (sym, op) = draw(st.sampled_from(COMPARE[2:]))
        compare = _null_op(op)
        return (
            f"t {sym} now - duration('{days}d')",
            lambda r, d=days: compare(r["t"], NOW - timedelta(days=d)),
        )
    if choice == 6:
        value = draw(st.booleans())
        return repr(value), lambda r, v=value: v
    if choice == 7:
        inner = draw(condition(depth - 1))
        return f"not ({inner[0]})", lambda r, a=inner[1]: None if a(r) is None else not a(r)
    parts = [draw(condition(depth - 1)) for _ in range(draw(st.integers(2, 3)))]
    word, combine = (" and ", _and) if choice == 8 else (" or ", _or)
    return word.join(f"({p[0]})" for p in parts), lambda r, ps=parts, c=combine: c(
        [p[1](r) for p in ps]
    )


def _nullable(values):
    return st.lists(st.one_of(st.none(), values), min_size=8, max_size=8)


@st.composite
def batches(draw):
    times = _nullable(st.integers(0, 60 * 24 * 40).map(lambda m: NOW - timedelta(minutes=m)))
    data = {
        "i": pa.array(draw(_nullable(INTS)), pa.int64()),
        "j": pa.array(draw(_nullable(INTS)), pa.int64()),
        "f": pa.array(draw(_nullable(FLOATS)), pa.float64()),
        "s": pa.array(draw(_nullable(TEXTS)), pa.string()),
        "b": pa.array(draw(_nullable(st.booleans())), pa.bool_()),
        "t": pa.array(draw(times), pa.timestamp("us", tz="UTC")),
    }
    return pa.RecordBatch.from_pydict(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=condition(), batch=batches())
def test_vectorised_evaluation_agrees_with_a_row_by_row_reference(expr, batch):
    source, reference = expr
    got = Expression(source).evaluate(batch, NOW).to_pylist()
    expected = [reference(row) for row in batch.to_pylist()]
    assert got == expected, source


def test_a_type_mismatch_names_the_expression_and_the_column_types():
    """A text column compared with a number: the error says which expression and which
    column type, not only Arrow's kernel message."""
    batch = pa.RecordBatch.from_pydict({"sc": ["0.5", "0.7"]})
    with pytest.raises(ConfigError, match=r"expression 'sc >= 0.6'.*\(sc: string\)"):
        Expression("sc >= 0.6").evaluate(batch, None)
