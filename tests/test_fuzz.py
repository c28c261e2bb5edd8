"""Malformed input never gives a traceback: the CLI exits 0, 2, 3, 4 or 5; the API raises a
LevalignError (or returns).

Hypothesis mutates valid documents (a value replaced by any JSON value, a key removed, an
unknown key added, the file's bytes damaged) and follower tables (columns of any type), and
drives the CLI in-process (typer's runner) and the Python API with them. Bounded: a fixed
number of examples per test, replayed identically on every run (tests/conftest.py).
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from levalign.cli import app
from levalign.errors import LevalignError
from levalign.markets import load_markets
from levalign.normalize import COHORT_COLUMNS, normalize

runner = CliRunner()
EXIT_CODES = {0, 2, 3, 4, 5}
FUZZ = settings(
    max_examples=int(os.environ.get("LEVALIGN_FUZZ_EXAMPLES", "25")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)

EVENT = {
    "event_id": "e1",
    "symbol": "BTC/USDT:USDT",
    "price": 20_000,
    "lead_equity": 10_000,
    "lead_position_before": 0,
    "lead_position_after": 5,
}
DOCUMENTS: dict[str, dict[str, Any]] = {
    "margin": {
        "exchange": "binance",
        "wallet_balance": 10_000,
        "positions": [
            {"symbol": "BTC/USDT:USDT", "side": "long", "contracts": 1, "entryPrice": 20_000,
             "markPrice": 20_000, "marginMode": "isolated", "collateral": 2_000, "leverage": 10},
        ],
    },
    "normalize": {
        "exchange": "binance",
        "event": EVENT,
        "followers": [{"id": "a", "equity": 1_000, "max_leverage": 5}, {"id": "b", "equity": 50}],
    },
    "derisk": {
        "exchange": "binance",
        "symbol": "BTC/USDT:USDT",
        "price": 19_000,
        "followers": [{"id": "a", "equity": 1_000, "position": 0.5, "entry_price": 20_000,
                       "collateral": 900, "derisk_distance": 0.08}],
    },
    "simulate": {
        "model": {"type": "gbm", "sigma": 0.8},
        "spot": 22_000, "side": "long", "liquidation_price": 18_000,
        "horizon_days": 1, "paths": 1_000, "steps": 4, "seed": 1,
    },
    "align": {
        "model": {"type": "gbm", "sigma": 0.8, "mu": 1.0},
        "spot": 22_000, "exchange": "binance", "symbol": "BTC/USDT:USDT", "equity": 10_000,
        "horizon_days": 1, "paths": 1_000, "steps": 4, "grid_points": 8,
    },
}  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -1, 1e308, -1e308, 1e-308, "", " ", "binance", "long", "cross"])
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a JSON document (the root included)."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """``base`` with one to three mutations: replace, delete or add (an unknown key)."""
    doc: Any = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if not where:
            if op == "replace":
                doc = draw(json_values)
            continue
        parent = doc
        for step in where[:-1]:
            parent = parent[step]
        last = where[-1]
        if op == "replace":
            parent[last] = draw(json_values)
        elif op == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    return doc


def _text(doc: Any) -> str:
    return json.dumps(doc)  # NaN and Infinity as Python writes them (read back by json)


def _check(result: Any) -> None:
    problem = result.exception if not isinstance(result.exception, SystemExit) else None
    assert problem is None, f"{problem!r}\n{result.output}"
    assert result.exit_code in EXIT_CODES, result.output
    assert "Traceback" not in result.output
    if result.exit_code:
        error = json.loads(result.stderr.strip().splitlines()[-1], parse_constant=_no_constant)
        assert error["error"]["message"]


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} in error JSON")


@pytest.mark.parametrize("command", sorted(DOCUMENTS))
def test_malformed_json_documents_never_give_a_traceback(tmp_path: Path, command: str) -> None:
    @FUZZ
    @given(doc=mutated(DOCUMENTS[command]))
    def run(doc: Any) -> None:
        path = tmp_path / "in.json"
        path.write_text(_text(doc), encoding="utf-8")
        _check(runner.invoke(app, [command, str(path)]))

    run()


@FUZZ
@given(data=st.binary(max_size=40), cut=st.integers(0, 200))
def test_damaged_bytes_never_give_a_traceback(tmp_path: Path, data: bytes, cut: int) -> None:
    # valid JSON cut anywhere and spliced with arbitrary bytes (invalid UTF-8 included)
    text = _text(DOCUMENTS["normalize"]).encode()
    path = tmp_path / "in.json"
    path.write_bytes(text[:cut] + data + text[cut:])
    _check(runner.invoke(app, ["normalize", str(path)]))


column_values = st.lists(
    st.none()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(10**6), 10**6)
    | st.sampled_from(["proportional", "cross", "skip", "x", "", "1e308", "nan"]),
    min_size=2,
    max_size=2,
)


@st.composite
def follower_tables(draw: st.DrawFn) -> dict[str, list[Any]]:
    """Two followers, ``id`` and ``equity`` usually present, any other columns of any value."""
    table: dict[str, list[Any]] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        table["id"] = draw(
            st.lists(st.none() | st.text(max_size=3) | st.integers(0, 3), min_size=2, max_size=2)
        )
    if draw(st.booleans()) or draw(st.booleans()):
        table["equity"] = draw(column_values)
    names = st.sampled_from([*COHORT_COLUMNS, "levrage", "group"])
    for name in draw(st.lists(names, max_size=4, unique=True)):
        table[name] = draw(column_values)
    return table


def _csv(table: dict[str, list[Any]]) -> str:
    rows = [",".join(table)]
    rows += [
        ",".join("" if table[c][i] is None else str(table[c][i]) for c in table) for i in (0, 1)
    ]
    return "\n".join(rows) + "\n"


@FUZZ
@given(table=follower_tables())
def test_malformed_follower_tables_never_give_a_traceback(
    tmp_path: Path, table: dict[str, list[Any]]
) -> None:
    request = tmp_path / "r.json"
    request.write_text(_text({"exchange": "binance", "event": EVENT}), encoding="utf-8")
    followers = tmp_path / "f.csv"
    followers.write_text(_csv(table) if table else "", encoding="utf-8")
    out = tmp_path / "o.parquet"
    _check(
        runner.invoke(
            app, ["normalize", str(request), "--followers", str(followers), "--out", str(out)]
        )
    )


MARKETS = load_markets("binance")


@FUZZ
@given(event=mutated(EVENT), table=follower_tables(), as_arrow=st.booleans())
def test_the_python_api_raises_only_levalign_errors(
    event: Any, table: dict[str, list[Any]], as_arrow: bool
) -> None:
    followers: Any = table
    if as_arrow:
        try:
            followers = pa.table(table)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return  # pyarrow itself refuses the mixed column: nothing reaches levalign
    error: LevalignError | None = None
    try:
        result = normalize(event, followers, MARKETS)
    except LevalignError as err:
        error = err
    if error is not None:
        assert error.message
        json.dumps(error.to_dict(), allow_nan=False)
        return
    for row in result.orders():
        assert all(not (isinstance(v, float) and math.isnan(v)) for v in row.values())
