"""The error type raised for bad user data (files, columns, templates, splits)."""
from __future__ import annotations


class DataError(ValueError):
    """A user-facing data problem; the message is one line naming the file/column and what was expected."""
