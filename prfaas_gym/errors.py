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
