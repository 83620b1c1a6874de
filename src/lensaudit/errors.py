"""Error hierarchy: the CLI turns each into one clear sentence and an exit code.

Exit codes: 1 any other lensaudit error, 2 configuration, 3 input (or an OS error on a path), 4 a blocking
gate failed, 5 an upstream stage is missing, failed or was made with another config, 6 a stage broke its
contract, 7 ``lensaudit verify`` disagrees with a recorded gate, 8 ``lensaudit doctor`` found a blocker, 130
interrupted."""

from __future__ import annotations


class LensAuditError(Exception):
    """Base class of every error lensaudit raises on purpose."""

    exit_code = 1


class ConfigError(LensAuditError, ValueError):
    """The configuration is invalid (unknown key, out-of-range value, bad override)."""

    exit_code = 2


class InputError(LensAuditError, ValueError):
    """An input file or table is missing or malformed."""

    exit_code = 3


class GateFailed(LensAuditError):
    """A blocking validation gate failed; the manifest records the measured figures."""

    exit_code = 4


class UpstreamError(LensAuditError):
    """An upstream stage has not run, or its artifacts changed since this stage ran."""

    exit_code = 5


class ContractError(LensAuditError):
    """A stage read, wrote or configured something outside its declared contract (a bug, not bad input)."""

    exit_code = 6
