"""The scripted lead: the bundled btc_scalper history played as fills over the candles."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from hyperliquid.info import Info
from typer.testing import CliRunner
from websockets.sync.client import connect

import levalign.data
from levalign.cli import app
from levalign.errors import ConfigurationError, InvalidInput
from levalign.sandbox.hyperliquid import DEFAULT_LEAD, HyperliquidSandbox, SandboxConfig
from levalign.sandbox.hyperliquid._cli import parse_fund, parse_speed
from levalign.sandbox.hyperliquid._engine import Engine

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


def test_a_taken_port_is_a_configuration_error(sandbox: HyperliquidSandbox):
    with pytest.raises(ConfigurationError, match="choose another --port"):
        HyperliquidSandbox(SandboxConfig(port=sandbox.port)).start()


def test_cli_without_the_live_extra_says_which_extra():
    prelude = "import sys\nsys.modules['aiohttp'] = None\n"
    code = (
        "from levalign.cli import main\nsys.argv = ['levalign', 'sandbox', 'hyperliquid']\nmain()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 4, out.stderr
    error = json.loads(out.stderr.strip().splitlines()[-1])["error"]
    assert "pip install 'levalign[live]'" in error["message"]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_in_its_own_process_until_interrupted(stop: signal.Signals):
    command = [sys.executable, "-c", "from levalign.cli import main; main()"]
    args = ["sandbox", "hyperliquid", "--port", "0", "--speed", "0", "--lead", str(SCALPER)]
    fund = ["--fund", "0x" + "ab" * 20 + "=500"]
    with subprocess.Popen(
        [*command, *args, *fund], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            banner = proc.stdout.readline()  # blocks until the server listens
            base_url = banner.split(" on ")[1].split()[0]
            status = requests.post(f"{base_url}/_sandbox/step", json={"fills": 2}, timeout=30)
            assert status.json()["script"]["fills_played"] == 2
            state = requests.post(
                f"{base_url}/info",
                json={"type": "clearinghouseState", "user": "0x" + "ab" * 20},
                timeout=30,
            ).json()
            assert state["marginSummary"]["accountValue"] == "500.0"
        finally:
            proc.send_signal(stop)
            returncode = proc.wait(timeout=60)
    assert returncode == 0


def _scenario() -> list[dict[str, Any]]:
    engine = Engine()
    engine.set_mid("BTC", Decimal(20000))
    for n, user in enumerate(("0x" + "01" * 20, "0x" + "02" * 20)):
        engine.fund(user, Decimal(1000))
        for k, (buy, px) in enumerate([(True, "20100"), (False, "19000"), (True, "19900")]):
            wire = {
                "a": 0,
                "b": buy,
                "p": px,
                "s": "0.01",
                "r": False,
                "t": {"limit": {"tif": "Gtc"}},
                "c": f"0x{n:016x}{k:016x}",
            }
            engine.place(user, wire)
        engine.set_mid("BTC", Decimal(19800 - 100 * n))
    return [
        {k: v for k, v in fill.items() if k != "time"}
        for acct in engine.accounts.values()
        for fill in acct.fills
    ]


def test_the_same_requests_give_the_same_fills():
    # oids, tids, hashes, prices and fees depend only on the requests, not on the clock
    first, second = _scenario(), _scenario()
    assert len(first) == 6
    assert first == second
