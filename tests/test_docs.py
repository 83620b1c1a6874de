"""The config reference in docs/ is generated from the pydantic models and must not drift from them."""

from pathlib import Path

from lensaudit.config import config_reference_markdown


def test_docs_config_reference_is_current():
    doc = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert doc.read_text().strip() == config_reference_markdown().strip(), (
        "regenerate: lensaudit config reference > docs/config.md"
    )


def test_docs_stage_contract_table_is_current():
    from lensaudit.stages import contracts_markdown

    text = (Path(__file__).resolve().parents[1] / "docs" / "artifacts.md").read_text()
    begin, end = "<!-- contracts:begin -->\n", "<!-- contracts:end -->"
    assert begin in text and end in text
    table = text.split(begin, 1)[1].split(end, 1)[0]
    assert table.strip() == contracts_markdown().strip(), (
        "regenerate: lensaudit stages --markdown (docs/artifacts.md)"
    )


def test_docs_gate_reference_is_current():
    from lensaudit.cli.validate import gates_markdown

    doc = Path(__file__).resolve().parents[1] / "docs" / "gates.md"
    assert doc.read_text().strip() == gates_markdown().strip(), (
        "regenerate: lensaudit gates --markdown > docs/gates.md"
    )
