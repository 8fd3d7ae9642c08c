"""Errors a user can act on: each names the problem and the fix."""

from __future__ import annotations


class DbarchError(Exception):
    """A problem the user can fix; `fix` says how."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}" if fix else problem)


class UnreachableDatabase(DbarchError):
    pass


class MissingExtension(DbarchError):
    pass
