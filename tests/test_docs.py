"""The config reference in docs/ is generated from the pydantic models and must not drift from them."""
from pathlib import Path

from lensaudit.config import config_reference_markdown


def test_docs_config_reference_is_current():
    doc = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert doc.read_text().strip() == config_reference_markdown().strip(), "regenerate: lensaudit config reference > docs/config.md"
