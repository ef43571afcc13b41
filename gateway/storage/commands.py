"""``gateway secret``: make a new encryption key, or re-encrypt stored secrets under it."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from gateway.config.settings import Settings, load_settings_with_warnings
from gateway.config.yaml import ConfigError
from gateway.security.crypto import DecryptionError, Keyring, generate_key
from gateway.storage.errors import RotationIncomplete, StorageError
from gateway.storage.store import Storage, open_storage

__all__ = ["add_arguments", "load_config", "run"]

_GENERATE_HELP = """\
Print a new random AES-256 key (URL-safe base64) for secrets.encryption_keys.

Keep it in a file only the gateway's user can read, and point the configuration at it:

  (umask 077; gateway secret generate > /etc/gateway/encryption_keys)

  secrets:
    encryption_keys_file: /etc/gateway/encryption_keys   # one key per line

The first key encrypts, every listed key decrypts. To rotate, put a new key on the
first line and keep the old ones below it:

  (umask 077; { gateway secret generate; cat /etc/gateway/encryption_keys; } \\
      > /etc/gateway/encryption_keys.new)
  mv /etc/gateway/encryption_keys.new /etc/gateway/encryption_keys

then restart every replica and run `gateway secret rotate --config gateway.yml`.
Afterwards the old keys may be removed. Back the keys up with the database: without
them, stored TOTP enrolments and upstream secrets cannot be read.
"""

_ROTATE_HELP = """\
Re-encrypt every stored secret (TOTP seeds, upstream credentials) under the first key
of secrets.encryption_keys. The old keys must still be listed after it so the values can
be read. Values already under the first key are left alone, so running it again is safe.

Exit status: 0 done, 1 some values could not be re-encrypted or the database is
unavailable, 2 the configuration is invalid.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    generate = actions.add_parser(
        "generate",
        help="print a new encryption key",
        description=_GENERATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate.set_defaults(_action=_generate)
    rotate = actions.add_parser(
        "rotate",
        help="re-encrypt stored secrets under the first configured key",
        description=_ROTATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rotate.add_argument(
        "--config", "-c", required=True, metavar="FILE", help="the gateway configuration file"
    )
    rotate.add_argument(
        "--batch-size",
        type=int,
        default=200,
        metavar="N",
        help="values re-encrypted per transaction (default: 200)",
    )
    rotate.set_defaults(_action=_rotate)


def load_config(path: str, prog: str) -> Settings | None:
    """Load the configuration, printing warnings, or print its problems and return None."""
    try:
        settings, warnings = load_settings_with_warnings(path)
    except ConfigError as error:
        print(f"{prog}: invalid configuration:\n{error}", file=sys.stderr)
        return None
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return settings


def run(args: argparse.Namespace) -> int:
    action: int = args._action(args)
    return action


def _generate(args: argparse.Namespace) -> int:
    print(generate_key())
    return 0


def _rotate(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        print("gateway secret rotate: --batch-size must be at least 1", file=sys.stderr)
        return 2
    settings = load_config(args.config, "gateway secret rotate")
    if settings is None:
        return 2
    keyring = Keyring.from_texts(settings.secrets.encryption_keys)
    try:
        changed, where = asyncio.run(_rotate_storage(settings, keyring, args.batch_size))
    except RotationIncomplete as error:
        print(f"gateway secret rotate: {error}", file=sys.stderr)
        print(
            "Add the key those values were sealed with after the first key in "
            "secrets.encryption_keys and run the command again.",
            file=sys.stderr,
        )
        return 1
    except (StorageError, DecryptionError) as error:
        print(f"gateway secret rotate: {error}", file=sys.stderr)
        return 1
    print(f"re-encrypted {changed} value(s) in {where} under key {keyring.current_key_id}")
    older = [key_id for key_id in keyring.key_ids if key_id != keyring.current_key_id]
    if older:
        print(
            f"No stored value uses the older key(s) {', '.join(older)} any more; you may "
            "remove them from secrets.encryption_keys (keep a backup until you are sure)."
        )
    return 0


async def _rotate_storage(settings: Settings, keyring: Keyring, batch_size: int) -> tuple[int, str]:
    async with await open_storage(settings) as storage:
        try:
            changed = await storage.rotate_encryption(keyring, batch_size=batch_size)
        except RotationIncomplete as error:
            await _audit(storage, keyring, error.changed, failed=len(error.failed))
            raise
        await _audit(storage, keyring, changed, failed=0)
        return changed, storage.description


async def _audit(storage: Storage, keyring: Keyring, changed: int, *, failed: int) -> None:
    await storage.audit.append_audit(
        "encryption.rotated",
        f"cli:{_operator()}",
        {"key_id": keyring.current_key_id, "changed": str(changed), "failed": str(failed)},
    )


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name, e.g. in a container with an unnamed UID
        return "unknown"
