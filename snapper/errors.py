"""One exception family; the CLI maps each to a one-line message and an exit code.

Message shape: ``<object>: <what is wrong> (<how to fix>)``.
"""

from __future__ import annotations


class SnapperError(Exception):
    """Base class: a failure the user can act on. Never carries a traceback to the terminal."""

    exit_code = 1

    def __init__(self, obj: str, problem: str, fix: str = "") -> None:
        self.obj = obj
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.obj}: {self.problem}"
        return f"{text} ({self.fix})" if self.fix else text


class UsageError(SnapperError):
    """Bad arguments: exit 2 like any CLI usage error."""

    exit_code = 2


class DataRootError(SnapperError):
    """The Docker data root is missing, unreadable or not laid out as expected."""


class SnapshotError(SnapperError):
    """A snapshot directory is missing, incomplete, corrupt or of another schema version."""


class OutputError(SnapperError):
    """The snapshot could not be written (disk full, permissions, target exists)."""


class QueryError(SnapperError):
    """A query file is missing, malformed, or failed in DuckDB."""


class ReclaimError(SnapperError):
    """A reclaim plan is unreadable or cannot be applied here (another host or data root, a daemon running)."""


class LakeError(SnapperError):
    """The fleet lake is unreachable, of another schema version, or a push or query on it failed."""


class QuarantineError(SnapperError):
    """The reclaim quarantine or its journal is unusable, or a move cannot be done or undone."""


class UnclassifiedDriverError(SnapperError):
    """The snapshot's active storage driver is one snapper does not classify: no verdicts are given."""
