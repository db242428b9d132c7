"""Errors raised on bad user input.

Every error a user can cause by handing us a malformed file, an invalid config or a
mismatched checkpoint is a :class:`PrfaasInputError`. Its message names *what* is wrong and
*where* (file, line, key), and the CLI prints it without a traceback and exits non-zero.
"""

from __future__ import annotations

from pathlib import Path


class PrfaasInputError(ValueError):
    """Bad user input: a trace line, a config key, a checkpoint, a socket frame.

    ``where`` is a human-readable location such as ``"trace.jsonl:17"`` or
    ``"scenario.yaml: workload.rate"``; it is prefixed to the message.
    """

    def __init__(self, message: str, where: str | Path | None = None) -> None:
        self.where = str(where) if where is not None else None
        self.reason = message
        super().__init__(f"{self.where}: {message}" if self.where else message)


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a :class:`Path` if it is a file; otherwise a :class:`PrfaasInputError`
    naming it and saying whether it is missing or a directory. ``what`` names its role."""
    path = Path(path)
    if path.is_dir():
        raise PrfaasInputError(f"{what} is a directory, not a file", path)
    if not path.is_file():
        raise PrfaasInputError(f"{what} not found", path)
    return path
