"""The ``lensaudit`` command line (the top layer: it may import everything, nothing imports it)."""

from lensaudit.cli.common import DEFAULT_CONFIG
from lensaudit.cli.main import app

__all__ = ["DEFAULT_CONFIG", "app"]
