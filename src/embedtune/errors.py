"""Errors a user can act on.

Every problem with the user's input is raised as :class:`InputError`, which carries the file, line and field
so the message points at the exact place to fix. Stage scripts print these messages (never a traceback) and
exit non-zero; see :func:`embedtune.runtime.run_stage`.
"""

from __future__ import annotations

from pathlib import Path


class EmbedtuneError(Exception):
    """Base class for errors whose message is meant for the user, not for a debugger."""


class InputError(EmbedtuneError):
    """Bad input data: names the file, the line (1-based) and the field at fault."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f"field '{self.field}': " if self.field else ""
        return f"{where}{field}{self.message}"


class ConfigError(EmbedtuneError):
    """A parameter in params.yaml (or a Hydra override) is missing or has an unusable value."""
