"""Small helpers for the words a person reads."""

from __future__ import annotations


def plural(count: int | float, noun: str, plural_form: str | None = None) -> str:
    """'1 epoch', '2 epochs', '0 epochs' (`plural_form` for irregular nouns)."""
    return f"{count:g} {noun}" if count == 1 else f"{count:g} {plural_form or noun + 's'}"
