"""lensaudit: strong-lens training sets, lens-finder audits and selection functions for DESI Legacy Surveys
DR10."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
