"""Every config field is read somewhere in the package (issue 21): a key that nothing reads is a promise the
code does not keep (the dead ``inject.host_type_axis`` and ``train.num_workers`` were removed for this)."""

from __future__ import annotations

import re
from pathlib import Path

from lensaudit.config import RunConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "lensaudit"


def _unread() -> list[str]:
    code = "\n".join(p.read_text() for p in SRC.rglob("*.py") if p.name != "config.py")
    out = []
    for section, field in RunConfig.model_fields.items():
        for key in getattr(field.annotation, "model_fields", {}):
            # an attribute read (cfg.key), or the key named as a stage's declared "section.key" / a string key
            pats = (rf"\.{key}\b", rf"[\"']{section}\.{key}[\"']", rf"[\"']{key}[\"']")
            if not any(re.search(p, code) for p in pats):
                out.append(f"{section}.{key}")
    return out


def test_every_config_field_is_read():
    assert _unread() == []


def test_the_check_finds_an_unread_field(monkeypatch):
    """The test can fail: a field nobody reads is reported."""
    from pydantic import Field, create_model

    from lensaudit import config

    extra = create_model("ExtraSection", __base__=config.Section, never_read_anywhere=(int, Field(0)))
    fields = dict(RunConfig.model_fields)
    fields["zz_extra"] = type(fields["run"])(annotation=extra, default_factory=extra)
    monkeypatch.setattr(RunConfig, "model_fields", fields)
    assert _unread() == ["zz_extra.never_read_anywhere"]
