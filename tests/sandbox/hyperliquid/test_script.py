"""The scripted lead: the bundled btc_scalper history played as fills over the candles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hyperliquid.info import Info
from typer.testing import CliRunner
from websockets.sync.client import connect

import levalign.data
from levalign.cli import app
from levalign.errors import InvalidInput
from levalign.sandbox.hyperliquid import DEFAULT_LEAD, HyperliquidSandbox, SandboxConfig
from levalign.sandbox.hyperliquid._cli import parse_fund, parse_speed

SCALPER = Path(levalign.data.__file__).parent / "leads" / "btc_scalper.csv.gz"

# the file's first rows: position_after 34.033, 27.226, 13.613 at 23506.52, 23589.46,
# 23713.95; the third row's equity 105955.38398985396


def test_lead_plays_the_files_fills():
    with HyperliquidSandbox(SandboxConfig(lead=SCALPER)) as sb:
        info = Info(sb.base_url, skip_ws=True)
        status = sb.step(fills=3)
        assert status["script"]["fills_played"] == 3
        assert status["script"]["fills_total"] == 476
        fills = list(reversed(info.user_fills(DEFAULT_LEAD)))
        # sizes: 34.033, 34.033 - 27.226 = 6.807, 27.226 - 13.613 = 13.613;
        # prices rounded to 5 significant figures
        assert [(f["side"], f["sz"], f["px"], f["dir"]) for f in fills] == [
            ("B", "34.033", "23507.0", "Open Long"),
            ("A", "6.807", "23589.0", "Close Long"),
            ("A", "13.613", "23714.0", "Close Long"),
        ]
        state = info.user_state(DEFAULT_LEAD)
        assert state["marginSummary"]["accountValue"] == "105955.38399"
        assert state["assetPositions"][0]["position"]["szi"] == "13.613"
        assert info.all_mids()["BTC"] == "23714.0"
        by_time = info.user_fills_by_time(DEFAULT_LEAD, 0)  # oldest first
        assert [f["tid"] for f in by_time] == [f["tid"] for f in fills]
        assert info.user_fills_by_time(DEFAULT_LEAD, fills[-1]["time"] + 1) == []


def test_candle_steps_move_the_mid_between_fills():
    with HyperliquidSandbox(SandboxConfig(lead=SCALPER)) as sb:
        info = Info(sb.base_url, skip_ws=True)
        # the first step is the 04:36 candle (close 23485.51) before the first fill at 04:37
        sb.step(1)
        assert info.all_mids()["BTC"] == "23486.0"
        assert info.user_fills(DEFAULT_LEAD) == []


def test_lead_fills_stream_on_the_websocket():
    with (
        HyperliquidSandbox(SandboxConfig(lead=SCALPER)) as sb,
        connect("ws" + sb.base_url.removeprefix("http") + "/ws") as ws,
    ):
        ws.recv(timeout=20)
        sub = {"type": "userFills", "user": DEFAULT_LEAD}
        ws.send(json.dumps({"method": "subscribe", "subscription": sub}))
        ws.recv(timeout=20)  # ack
        assert json.loads(ws.recv(timeout=20))["data"]["fills"] == []
        sb.step(fills=1)
        message = json.loads(ws.recv(timeout=20))
        assert message["data"]["fills"][0]["sz"] == "34.033"


def test_speed_max_plays_the_whole_script():
    with HyperliquidSandbox(SandboxConfig(lead=SCALPER, speed=float("inf"))) as sb:
        for _ in range(10_000):
            if sb.status()["script"]["done"]:
                break
        status = sb.status()["script"]
        assert status["done"]
        assert status["fills_played"] == 476
        info = Info(sb.base_url, skip_ws=True)
        assert len(info.user_fills(DEFAULT_LEAD)) == 476


def test_cli_option_parsing():
    assert parse_speed("60") == 60.0
    assert parse_speed("max") == float("inf")
    assert parse_fund(["0x" + "ab" * 20 + "=100", "0x" + "AB" * 20 + "=50"]) == {
        "0x" + "ab" * 20: 150
    }
    with pytest.raises(InvalidInput, match="--fund takes ADDRESS=USDC"):
        parse_fund(["0xabc=1"])
    with pytest.raises(InvalidInput, match="--speed must be a number"):
        parse_speed("-1")


def test_cli_bad_options_exit_2():
    result = CliRunner().invoke(app, ["sandbox", "hyperliquid", "--speed", "fast"])
    assert result.exit_code == 2
    assert "--speed must be a number" in result.output
    result = CliRunner().invoke(app, ["sandbox", "hyperliquid", "--lead", "missing.csv"])
    assert result.exit_code == 2
