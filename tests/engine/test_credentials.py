from __future__ import annotations

from pathlib import Path

import pytest

from levalign.engine.credentials import (
    KEYFILE_ENV,
    CredentialResolver,
    check_reference,
    encrypt_keys,
    new_file_key,
)
from levalign.errors import ConfigurationError, InvalidInput

KEY = "0x" + "4c" * 32


def test_a_file_reference_resolves_to_its_entry(tmp_path: Path) -> None:
    # Arrange
    file_key = new_file_key()
    encrypt_keys({"alice": KEY}, tmp_path / "keys.enc", file_key)
    resolver = CredentialResolver(tmp_path, env={KEYFILE_ENV: file_key})

    # Act
    secret = resolver("file:keys.enc#alice")

    # Assert: the key comes back; the file holds no plain text
    assert secret.reveal() == KEY
    assert KEY[2:] not in (tmp_path / "keys.enc").read_text()


@pytest.mark.parametrize(
    ("env", "ref", "match"),
    [
        ({}, "file:keys.enc#alice", f"{KEYFILE_ENV}.*is not set"),
        ({KEYFILE_ENV: "not-a-fernet-key"}, "file:keys.enc#alice", "not a Fernet key"),
        ("other", "file:keys.enc#alice", "cannot be decrypted.*wrong key"),
        ("same", "file:keys.enc#bob", "no entry 'bob'"),
        ("same", "file:missing.enc#alice", "cannot read key file"),
        ({}, "env:LEVALIGN_TEST_UNSET", "LEVALIGN_TEST_UNSET.*is not set"),
    ],
)
def test_a_wrong_or_missing_key_is_a_configuration_error_without_the_secret(
    tmp_path: Path, env: dict[str, str] | str, ref: str, match: str
) -> None:
    # Arrange
    file_key = new_file_key()
    encrypt_keys({"alice": KEY}, tmp_path / "keys.enc", file_key)
    named = {"same": {KEYFILE_ENV: file_key}, "other": {KEYFILE_ENV: new_file_key()}}
    environ = named[env] if isinstance(env, str) else env

    # Act / Assert
    with pytest.raises(ConfigurationError, match=match) as info:
        CredentialResolver(tmp_path, env=environ)(ref)
    assert KEY[2:] not in info.value.message
    assert file_key not in info.value.message


def test_encrypt_refuses_a_value_that_is_not_a_key_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a private key") as info:
        encrypt_keys({"alice": "hunter2"}, tmp_path / "k.enc", new_file_key())
    assert "hunter2" not in info.value.message


@pytest.mark.parametrize("ref", ["env:", "file:keys.enc", "vault:x", KEY])
def test_a_reference_must_say_where_the_key_is(ref: str) -> None:
    with pytest.raises(InvalidInput, match="env:NAME") as info:
        check_reference(ref, "followers[0].credentials")
    assert KEY not in info.value.message
