"""``levalign sandbox hyperliquid``: option parsing and the banner; serving is in _server."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

import typer

from levalign.errors import InvalidInput
from levalign.sandbox.hyperliquid._server import SandboxConfig, serve

__all__ = ["parse_fund", "parse_speed", "run"]


def parse_speed(text: str) -> float:
    """``"60"`` -> 60.0, ``"max"`` -> inf, ``"0"`` -> 0 (play only on request).

    Raises
    ------
    InvalidInput
        Not a non-negative number nor ``max``.
    """
    if text.strip().lower() == "max":
        return math.inf
    try:
        speed = float(text)
    except ValueError:
        speed = -1.0
    if not (math.isfinite(speed) and speed >= 0):
        raise InvalidInput(
            f"--speed must be a number >= 0 (60: 60x real time; 0: step on request) or max, "
            f"got {text!r}",
            field="speed",
            value=text,
        )
    return speed


def parse_fund(items: Sequence[str]) -> dict[str, Decimal]:
    """``["0xabc...=1000"]`` -> ``{"0xabc...": Decimal(1000)}``.

    Raises
    ------
    InvalidInput
        An item that is not ``ADDRESS=USDC`` with a 0x address of 40 hex digits and a
        non-negative amount.
    """
    out: dict[str, Decimal] = {}
    for item in items:
        address, _, amount = item.partition("=")
        try:
            usdc = Decimal(amount)
            int(address.removeprefix("0x"), 16)
        except (InvalidOperation, ValueError):
            usdc = Decimal(-1)
        if len(address) != 42 or not address.startswith("0x") or not usdc.is_finite() or usdc < 0:
            raise InvalidInput(
                f"--fund takes ADDRESS=USDC (0x and 40 hex digits, an amount >= 0), got {item!r}",
                field="fund",
                value=item,
            )
        out[address.lower()] = out.get(address.lower(), Decimal(0)) + usdc
    return out


def run(*, port: int, lead: Path | None, speed: str, fund: Sequence[str]) -> None:
    """Build the configuration from the CLI options and serve until interrupted."""
    if lead is not None and not lead.exists():
        raise InvalidInput(f"--lead {str(lead)!r} does not exist", field="lead", value=str(lead))
    config = SandboxConfig(port=port, lead=lead, speed=parse_speed(speed), fund=parse_fund(fund))

    def ready(base_url: str, lead_address: str) -> None:
        ws_url = "ws" + base_url.removeprefix("http") + "/ws"
        typer.echo(f"Hyperliquid sandbox on {base_url} (websocket {ws_url})")
        typer.echo(f"lead account {lead_address}; control plane {base_url}/_sandbox/status")
        typer.echo("Ctrl-C stops it.")

    serve(config, ready=ready)
