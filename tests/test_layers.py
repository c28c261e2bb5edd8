"""Imports point one way: from the outer layers (cli, api, engine, backtest) down to the core.

Every ``import`` in ``src/levalign`` is read with :mod:`ast`, also those inside functions
(lazy imports are imports too); only ``if TYPE_CHECKING:`` blocks are left out, since they
never run. A module may import its own layer and the layers below it, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parent.parent / "src"
PACKAGE = SRC / "levalign"

#: the layers, inner to outer; a top-level module not named here is core
LAYERS = {
    "risk": 1,
    "venues": 1,
    "sources": 1,
    "engine": 2,
    "backtest": 2,
    "cli": 3,
    "api": 3,
    "sandbox": 3,
    "demo": 3,
    "testing": 3,
}
#: upward imports tolerated, each named: normalize builds an event's liquidation curve with
#: the risk engine (a lazy import, only when a follower has a max_liq_probability)
KNOWN = {("levalign.normalize", "levalign.risk.curve")}
LAYER_NAMES = ("core", "risk/venues/sources", "engine/backtest", "cli/api/sandbox/demo/testing")


def layer(module: str) -> int:
    """The layer of a dotted module name under ``levalign``."""
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    base = SRC.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(tree: ast.AST, here: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every levalign module the tree imports, outside TYPE_CHECKING."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((node.lineno, sub if is_module(sub) else base))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [(line, m) for line, m in found if m == "levalign" or m.startswith("levalign.")]


def test_no_module_imports_an_outer_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, target in imported(tree, here, path.name == "__init__.py"):
            if layer(target) > layer(here) and (here, target) not in KNOWN:
                upward.append(
                    f"{path.relative_to(SRC)}:{line}: {here} ({LAYER_NAMES[layer(here)]}) "
                    f"imports {target} ({LAYER_NAMES[layer(target)]})"
                )
    assert upward == [], "\n".join(upward)


def test_the_checker_sees_lazy_and_relative_imports():
    code = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from levalign.cli import app\n"
        "def f():\n    from levalign.backtest import replay\n"
        "from . import _paper_kernels\n"
    )
    got = imported(ast.parse(code), "levalign.venues.paper", is_package=False)
    assert got == [(5, "levalign.backtest.replay"), (6, "levalign.venues._paper_kernels")]
