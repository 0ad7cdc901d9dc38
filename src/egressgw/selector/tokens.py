"""Lexer for the Calico selector language (selector-grammar.md §1).

Holds the token kinds (their values are Calico's kind names, e.g. ``TokLabel``) and
`tokenize`. It knows nothing of the grammar above single tokens, and does no I/O.
"""

from __future__ import annotations

import enum
import re
import string
from dataclasses import dataclass

from egressgw.selector.errors import SelectorParseError

MAX_LABEL_LEN = 512
"""Longest label (in bytes; labels are ASCII) that Calico's lexer accepts."""

LABEL_CHARS = frozenset(string.ascii_letters + string.digits + "_./-")
"""The characters of a label; ASCII only, so a non-ASCII letter is never part of one."""

# Only space and tab separate tokens; a newline outside a string is an error.
_WHITESPACE = re.compile(r"[ \t]*")
_LABEL = re.compile("[" + re.escape("".join(sorted(LABEL_CHARS))) + "]*")


class Kind(enum.Enum):
    """Token kinds; each value is the name Calico's tokenizer tests use."""

    LABEL = "TokLabel"
    STRING = "TokStringLiteral"
    EQ = "TokEq"
    NE = "TokNe"
    CONTAINS = "TokContains"
    STARTS_WITH = "TokStartsWith"
    ENDS_WITH = "TokEndsWith"
    IN = "TokIn"
    NOT_IN = "TokNotIn"
    NOT = "TokNot"
    HAS = "TokHas"
    ALL = "TokAll"
    GLOBAL = "TokGlobal"
    LPAREN = "TokLParen"
    RPAREN = "TokRParen"
    LBRACE = "TokLBrace"
    RBRACE = "TokRBrace"
    COMMA = "TokComma"
    AND = "TokAnd"
    OR = "TokOr"
    EOF = "TokEOF"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: `value` is the label, the literal's text or has()'s label, else ""."""

    kind: Kind
    value: str
    pos: int


_PUNCTUATION = {
    "(": Kind.LPAREN,
    ")": Kind.RPAREN,
    "{": Kind.LBRACE,
    "}": Kind.RBRACE,
    ",": Kind.COMMA,
}
_DOUBLED = {"=": Kind.EQ, "&": Kind.AND, "|": Kind.OR}
# Tried in this order, and only right after a label (so none of them is reserved).
_WORD_OPERATORS = (
    (("contains",), Kind.CONTAINS),
    (("starts", "with"), Kind.STARTS_WITH),
    (("ends", "with"), Kind.ENDS_WITH),
    (("not", "in"), Kind.NOT_IN),
    (("in",), Kind.IN),
)
_FUNCTIONS = (("has(", Kind.HAS), ("all(", Kind.ALL), ("global(", Kind.GLOBAL))


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens, always ending with an EOF token.

    Raises SelectorParseError for anything Calico's lexer rejects.
    """
    return _Lexer(text).run()


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.tokens: list[Token] = []

    def run(self) -> list[Token]:
        while True:
            self.pos = self._skip_ws(self.pos)
            if self.pos >= len(self.text):
                self.tokens.append(Token(Kind.EOF, "", self.pos))
                return self.tokens
            self.tokens.append(self._next())

    def _next(self) -> Token:
        char = self.text[self.pos]
        if char in _PUNCTUATION:
            return self._take(_PUNCTUATION[char], 1)
        if char in "\"'":
            return self._string(char)
        if char == "!":
            return self._take(Kind.NE, 2) if self._at("!=") else self._take(Kind.NOT, 1)
        if char in _DOUBLED:
            return self._doubled(char)
        if self.tokens and self.tokens[-1].kind is Kind.LABEL:
            return self._word_operator()
        return self._function() or self._label()

    def _take(self, kind: Kind, length: int, value: str = "") -> Token:
        token = Token(kind, value, self.pos)
        self.pos += length
        return token

    def _at(self, literal: str, pos: int | None = None) -> bool:
        return self.text.startswith(literal, self.pos if pos is None else pos)

    def _skip_ws(self, pos: int) -> int:
        match = _WHITESPACE.match(self.text, pos)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    def _label_end(self, pos: int) -> int:
        match = _LABEL.match(self.text, pos)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    def _fail(self, message: str, pos: int | None = None) -> SelectorParseError:
        return SelectorParseError(message, self.pos if pos is None else pos)

    def _string(self, quote: str) -> Token:
        # No escapes: the literal simply ends at the next matching quote.
        end = self.text.find(quote, self.pos + 1)
        if end < 0:
            raise self._fail("unterminated string literal")
        return self._take(Kind.STRING, end + 1 - self.pos, self.text[self.pos + 1 : end])

    def _doubled(self, char: str) -> Token:
        if not self._at(char * 2):
            raise self._fail(f"expected '{char * 2}'")
        return self._take(_DOUBLED[char], 2)

    def _word_operator(self) -> Token:
        for words, kind in _WORD_OPERATORS:
            end = self._match_words(words)
            if end is not None:
                return self._take(kind, end - self.pos)
        raise self._fail("expected operator after label")

    def _match_words(self, words: tuple[str, ...]) -> int | None:
        """End of `words` (whitespace allowed between them) at pos, if at a word boundary."""
        pos = self.pos
        for index, word in enumerate(words):
            pos = self._skip_ws(pos) if index else pos
            if not self._at(word, pos):
                return None
            pos += len(word)
        # Calico skips whitespace before the boundary check only for the two-word forms.
        boundary = self._skip_ws(pos) if len(words) > 1 else pos
        if self._label_end(boundary) > boundary:
            return None
        return pos

    def _function(self) -> Token | None:
        for name, kind in _FUNCTIONS:
            if self._at(name):
                return self._call(kind, self.pos + len(name))
        return None

    def _call(self, kind: Kind, pos: int) -> Token:
        """The rest of `has(label)`, `all()` or `global()`, from just after the `(`."""
        pos = self._skip_ws(pos)
        label = ""
        if kind is Kind.HAS:
            end = self._label_end(pos)
            if end == pos:
                raise self._fail("expected a label inside has()", pos)
            self._check_length(pos, end)
            label, pos = self.text[pos:end], self._skip_ws(end)
        if not self._at(")", pos):
            raise self._fail("expected ')'", pos)
        return self._take(kind, pos + 1 - self.pos, label)

    def _label(self) -> Token:
        end = self._label_end(self.pos)
        if end == self.pos:
            raise self._fail("expected identifier")
        self._check_length(self.pos, end)
        return self._take(Kind.LABEL, end - self.pos, self.text[self.pos : end])

    def _check_length(self, start: int, end: int) -> None:
        if end - start > MAX_LABEL_LEN:
            raise self._fail(f"label too long ({end - start} > {MAX_LABEL_LEN} bytes)", start)
