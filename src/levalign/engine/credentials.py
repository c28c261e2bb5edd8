"""Follower credentials: where an API wallet's private key is, never the key itself.

A follower's ``credentials`` is a reference, resolved only when an order is signed:

``env:NAME``
    The key is in environment variable ``NAME`` (64 hex digits, optionally ``0x``).
``file:PATH#NAME``
    The key is entry ``NAME`` of ``PATH``, a JSON object ``{name: key}`` encrypted with
    Fernet (AES-128-CBC with HMAC-SHA256, the ``cryptography`` package) under the key in
    environment variable :data:`KEYFILE_ENV`. A relative ``PATH`` is read from the folder of
    the configuration file. ``levalign keys encrypt KEYS.json --out keys.enc`` writes one.

The store keeps only the reference. No message of this module contains a key or the file's
plain text; a wrong or missing decryption key is a :class:`~levalign.errors.ConfigurationError`
that names the reference and the environment variable.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from levalign.errors import ConfigurationError, InvalidInput
from levalign.venues.hyperliquid import SecretKey, credentials_from_env

__all__ = ["KEYFILE_ENV", "CredentialResolver", "check_reference", "encrypt_keys", "new_file_key"]

KEYFILE_ENV = "LEVALIGN_KEYFILE_KEY"
"""Environment variable holding the Fernet key of ``file:`` credentials."""

_PREFIXES = ("env:", "file:")


def check_reference(ref: str, field: str) -> str:
    """``ref`` if it has the form ``env:NAME`` or ``file:PATH#NAME``; never echoes a key.

    Raises
    ------
    InvalidInput
        Another form (the value is not shown: it may be a key pasted by mistake).
    """
    kind, _, rest = ref.partition(":")
    ok = ref.startswith(_PREFIXES) and bool(rest)
    if kind == "file":
        path, _, name = rest.partition("#")
        ok = ok and bool(path) and bool(name)
    if not ok:
        raise InvalidInput(
            f"{field} must say where the key is: env:NAME (an environment variable) or "
            "file:PATH#NAME (an encrypted key file); the value given is not shown",
            field=field,
        )
    return ref


def new_file_key() -> str:
    """A fresh Fernet key (URL-safe base64 text) to export as :data:`KEYFILE_ENV`."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def _fernet(env: Mapping[str, str], ref: str) -> object:
    from cryptography.fernet import Fernet

    key = env.get(KEYFILE_ENV)
    if not key:
        raise ConfigurationError(
            f"credentials {ref!r} are in an encrypted file, but environment variable "
            f"{KEYFILE_ENV} (its decryption key) is not set: export it",
            field="credentials",
            value=ref,
        )
    try:
        return Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ConfigurationError(
            f"{KEYFILE_ENV} is not a Fernet key (32 url-safe base64-encoded bytes); make one "
            "with `levalign keys new-key` (the value is not shown)",
            field="credentials",
            value=ref,
        ) from None


def encrypt_keys(keys: Mapping[str, str], out: Path, file_key: str) -> None:
    """Write ``keys`` (name -> private key) encrypted under ``file_key`` to ``out``, atomically.

    Every key is checked to be 64 hex digits first (the message never shows one).

    Raises
    ------
    InvalidInput
        A name that is empty or a value that is not a private key.
    ConfigurationError
        ``file_key`` is not a Fernet key.
    """
    for name, value in keys.items():
        if not name or "#" in name:
            raise InvalidInput(
                f"key name {name!r} must be non-empty without '#'", field="keys", value=name
            )
        try:
            SecretKey(str(value))
        except ConfigurationError:
            raise InvalidInput(
                f"keys[{name!r}] is not a private key (64 hex digits, optionally 0x); the "
                "value is not shown",
                field=f"keys.{name}",
            ) from None
    fernet = _fernet({KEYFILE_ENV: file_key}, f"file:{out}")
    token = fernet.encrypt(json.dumps(dict(keys)).encode("utf-8"))  # type: ignore[attr-defined]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(token)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CredentialResolver:
    """Resolves ``env:NAME`` and ``file:PATH#NAME`` references to :class:`SecretKey` values.

    Pass it as ``HyperliquidVenue(credentials=...)``. Decrypted files are kept in memory, as
    :class:`SecretKey` values only.

    Parameters
    ----------
    base_dir
        Folder that relative ``file:`` paths are read from (the configuration's).
    env
        The environment (default :data:`os.environ`).
    """

    def __init__(self, base_dir: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        self.base_dir = base_dir or Path.cwd()
        self.env = os.environ if env is None else env
        self._files: dict[Path, dict[str, SecretKey]] = {}

    def __repr__(self) -> str:
        return f"CredentialResolver(base_dir={str(self.base_dir)!r})"

    def __call__(self, ref: str) -> SecretKey:
        """The key behind ``ref``.

        Raises
        ------
        ConfigurationError
            The variable is unset, the file is missing or cannot be decrypted with the key in
            :data:`KEYFILE_ENV`, or it has no entry ``NAME`` (no message contains a key).
        """
        if ref.startswith("env:"):
            name = ref[4:]
            if not self.env.get(name):
                raise ConfigurationError(
                    f"environment variable {name} (credentials {ref!r}) is not set: export "
                    "the API wallet's private key in it",
                    field="credentials",
                    value=ref,
                )
            if self.env is os.environ:
                return credentials_from_env(ref)
            return SecretKey(self.env[name])
        if not ref.startswith("file:") or "#" not in ref:
            raise ConfigurationError(
                f"credentials {ref!r}: use env:NAME or file:PATH#NAME", field="credentials"
            )
        raw_path, _, name = ref[5:].rpartition("#")
        keys = self._file(raw_path, ref)
        if name not in keys:
            raise ConfigurationError(
                f"credentials {ref!r}: the key file has no entry {name!r} "
                f"(entries: {', '.join(sorted(keys)) or 'none'})",
                field="credentials",
                value=ref,
            )
        return keys[name]

    def _file(self, raw_path: str, ref: str) -> dict[str, SecretKey]:
        from cryptography.fernet import InvalidToken

        path = Path(raw_path)
        path = path if path.is_absolute() else self.base_dir / path
        found = self._files.get(path)
        if found is not None:
            return found
        fernet = _fernet(self.env, ref)
        try:
            token = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"credentials {ref!r}: cannot read key file {str(path)!r} ({exc.strerror})",
                field="credentials",
                value=ref,
            ) from None
        try:
            data = json.loads(fernet.decrypt(token))  # type: ignore[attr-defined]
        except (InvalidToken, ValueError):
            raise ConfigurationError(
                f"credentials {ref!r}: key file {str(path)!r} cannot be decrypted with the key "
                f"in {KEYFILE_ENV}: it is the wrong key, or the file is damaged",
                field="credentials",
                value=ref,
            ) from None
        if not isinstance(data, dict):
            raise ConfigurationError(
                f"credentials {ref!r}: key file {str(path)!r} does not hold a JSON object",
                field="credentials",
                value=ref,
            )
        keys: dict[str, SecretKey] = {}
        for name, value in data.items():
            try:
                keys[str(name)] = SecretKey(str(value))
            except ConfigurationError:
                raise ConfigurationError(
                    f"credentials {ref!r}: entry {name!r} of the key file is not a private "
                    "key (the value is not shown)",
                    field="credentials",
                    value=ref,
                ) from None
        self._files[path] = keys
        return keys
