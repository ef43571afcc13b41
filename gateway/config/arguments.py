"""The ``--config`` option every ``gateway`` command that reads gateway.yml shares."""

from __future__ import annotations

import argparse
import os

__all__ = ["CONFIG_ENV", "MISSING_CONFIG", "add_config_argument"]

CONFIG_ENV = "GATEWAY_CONFIG"
"""The environment variable that names the configuration when ``--config`` is not given."""

MISSING_CONFIG = f"pass --config FILE or set {CONFIG_ENV}"
"""What to say when neither names a configuration."""


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` / ``-c FILE``, by default ``$GATEWAY_CONFIG``."""
    parser.add_argument(
        "--config",
        "-c",
        default=os.environ.get(CONFIG_ENV),
        metavar="FILE",
        help=f"the gateway configuration (default: ${CONFIG_ENV})",
    )
