"""``python -m lensaudit.cli``."""

from lensaudit.cli.main import app

if __name__ == "__main__":
    app()
