from __future__ import annotations

from pathlib import Path

import pytest

from levalign.engine.config import load_config, parse_config
from levalign.errors import ConfigurationError

LEAD = "0x1ead000000000000000000000000000000000001"
ADDR = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"


def _doc(**follower: object) -> dict[str, object]:
    base = {"id": "alice", "address": ADDR, "credentials": "env:ALICE_KEY", "equity": 1000}
    return {"lead": {"address": LEAD}, "followers": [{**base, **follower}]}


def test_a_full_config_reads_sections_profile_and_guards(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "copy.toml"
    path.write_text(
        f'[lead]\naddress = "{LEAD}"\n[venue]\nbase_url = "http://127.0.0.1:8080/"\n'
        "[engine]\nslippage = 0.01\n"
        f'[[followers]]\nid = "alice"\naddress = "{ADDR}"\ncredentials = "env:ALICE_KEY"\n'
        'equity = 1000\nmode = "target_leverage"\nmax_leverage = 3\nmax_slippage = 0.002\n'
        'max_notional_per_symbol = {"BTC/USDC:USDC" = 5000}\nunfollow = "keep"\n',
        encoding="utf-8",
    )

    # Act
    config = load_config(path)

    # Assert: the store defaults to copy.db beside the config; the profile keeps sizing fields
    f = config.followers[0]
    assert config.store_url == f"sqlite:///{tmp_path.resolve() / 'copy.db'}"
    assert config.venue.base_url == "http://127.0.0.1:8080"
    assert f.profile == {"mode": "target_leverage", "max_leverage": 3}
    assert f.address == ADDR.lower()
    assert (config.slippage(f), f.max_notional_per_symbol, f.unfollow) == (
        0.002,
        {"BTC/USDC:USDC": 5000.0},
        "keep",
    )


@pytest.mark.parametrize(
    ("doc", "field", "match"),
    [
        (_doc(levrage=3), "followers[0].levrage", "did you mean 'max_leverage'"),
        (_doc(max_slipage=0.1), "followers[0].max_slipage", "did you mean 'max_slippage'"),
        (_doc(max_slippage=2), "followers[0].max_slippage", "less than 1"),
        (_doc(mode="yolo"), "followers[0].mode", "proportional"),
        (_doc(credentials="0x" + "ab" * 32), "followers[0].credentials", "env:NAME"),
        (_doc(unfollow="sell"), "followers[0].unfollow", "'close' or 'keep'"),
        ({**_doc(), "engin": {}}, "engin", "did you mean 'engine'"),
        ({**_doc(), "lead": {"adress": LEAD}}, "lead.adress", "did you mean 'address'"),
        ({**_doc(), "lead": {"address": "0x12"}}, "lead.address", "40 hex digits"),
        ({"followers": _doc()["followers"]}, "lead", "add a \\[lead\\] table"),
        ({"lead": {"address": LEAD}}, "followers", "exactly one"),
    ],
)
def test_a_bad_config_names_the_key_path_and_the_fix(
    doc: dict[str, object], field: str, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        parse_config(doc)
    assert info.value.field == field


def test_a_key_pasted_as_credentials_is_not_echoed() -> None:
    key = "0x" + "ab" * 32
    with pytest.raises(ConfigurationError) as info:
        parse_config(_doc(credentials=key))
    assert key not in info.value.message


def test_followers_file_rows_are_checked_like_tables(tmp_path: Path) -> None:
    # Arrange: row 1 has an unknown column
    (tmp_path / "f.csv").write_text(
        f"id,address,credentials,equity,scale,levrage\na,{ADDR},env:A,100,1,\n"
        f"b,{ADDR},env:B,100,0.5,3\n",
        encoding="utf-8",
    )
    path = tmp_path / "c.toml"
    path.write_text(f'followers_file = "f.csv"\n[lead]\naddress = "{LEAD}"\n', encoding="utf-8")

    # Act / Assert: the empty cell of row 0 is no value; row 1's is refused by name
    with pytest.raises(ConfigurationError, match="did you mean") as info:
        load_config(path)
    assert info.value.field == "followers_file row[1].levrage"


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[lead\naddress = 1\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"not valid TOML.*line 1"):
        load_config(path)


def test_the_bundled_example_config_checks() -> None:
    config = load_config(Path(__file__).parents[2] / "examples" / "copy.toml")
    assert [f.id for f in config.followers] == ["alice", "bob"]
    assert config.venue.base_url == "http://127.0.0.1:8080"
