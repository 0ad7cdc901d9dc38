"""The one exception the selector package raises for a bad selector.

Holds only the error type; it must not format user-facing output (the CLI draws carets).
"""

from __future__ import annotations


class SelectorParseError(ValueError):
    """A selector string that Calico would reject.

    `position` is the 0-based offset into the input where the problem was found, so a
    caller can point at it; `message` says what was expected there.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.message = message
        self.position = position

    def __reduce__(self) -> tuple[type[SelectorParseError], tuple[str, int]]:
        # ValueError pickles with its formatted args only; keep both fields instead.
        return (type(self), (self.message, self.position))
