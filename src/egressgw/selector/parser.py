"""Recursive-descent parser: tokens to a syntax tree (selector-grammar.md §2).

Holds `parse_node` only; it must not cache, evaluate or print selectors.
"""

from __future__ import annotations

from collections.abc import Sequence

from egressgw.selector.errors import SelectorParseError
from egressgw.selector.nodes import (
    All,
    And,
    Compare,
    Global,
    Has,
    InSet,
    Node,
    Op,
    Or,
    negate,
)
from egressgw.selector.tokens import Kind, Token, tokenize

MAX_NESTING = 100
"""Deepest parenthesis nesting we accept. Calico has no limit; Python's stack has one."""

_COMPARISONS = {
    Kind.EQ: Op.EQ,
    Kind.NE: Op.NE,
    Kind.CONTAINS: Op.CONTAINS,
    Kind.STARTS_WITH: Op.STARTS_WITH,
    Kind.ENDS_WITH: Op.ENDS_WITH,
}


def parse_node(text: str) -> Node:
    """The syntax tree of `text`; empty or blank text means `all()`.

    Raises SelectorParseError exactly when Calico's Parse/Validate fail (plus, beyond
    MAX_NESTING levels of parentheses, where Calico would accept).
    """
    tokens = tokenize(text)
    if tokens[0].kind is Kind.EOF:
        return All()
    parser = _Parser(tokens)
    node = parser.or_expr()
    if parser.peek().kind is not Kind.EOF:
        raise SelectorParseError("unexpected content at end of selector", parser.peek().pos)
    return node


class _Parser:
    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        # EOF is the last token; never step past it.
        if token.kind is not Kind.EOF:
            self.index += 1
        return token

    def accept(self, kind: Kind) -> Token | None:
        return self.advance() if self.peek().kind is kind else None

    def expect(self, kind: Kind, message: str) -> Token:
        token = self.accept(kind)
        if token is None:
            raise SelectorParseError(message, self.peek().pos)
        return token

    def or_expr(self) -> Node:
        operands = [self.and_expr()]
        while self.accept(Kind.OR):
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.unary()]
        while self.accept(Kind.AND):
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Node:
        negated = False
        while self.accept(Kind.NOT):
            negated = not negated
        node = self.primary()
        return negate(node) if negated else node

    def primary(self) -> Node:
        token = self.advance()
        match token.kind:
            case Kind.HAS:
                return Has(token.value)
            case Kind.ALL:
                return All()
            case Kind.GLOBAL:
                return Global()
            case Kind.LPAREN:
                return self.parenthesised(token)
            case Kind.LABEL:
                return self.operation(token.value)
            case Kind.EOF:
                raise SelectorParseError("unexpected end of selector", token.pos)
            case _:
                raise SelectorParseError("expected a label, has(), all() or '('", token.pos)

    def parenthesised(self, lparen: Token) -> Node:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise SelectorParseError("parentheses nested too deeply", lparen.pos)
        node = self.or_expr()
        self.expect(Kind.RPAREN, "expected ')'")
        self.depth -= 1
        return node

    def operation(self, label: str) -> Node:
        operator = self.advance()
        if operator.kind in _COMPARISONS:
            value = self.expect(Kind.STRING, "expected a quoted string")
            return Compare(label, _COMPARISONS[operator.kind], value.value)
        if operator.kind in (Kind.IN, Kind.NOT_IN):
            return InSet(label, self.set_literal(), negated=operator.kind is Kind.NOT_IN)
        raise SelectorParseError("expected an operator after label", operator.pos)

    def set_literal(self) -> tuple[str, ...]:
        self.expect(Kind.LBRACE, "expected set literal '{'")
        values: list[str] = []
        # Strings separated by commas; one trailing comma is allowed, `{,}` is not.
        while (token := self.accept(Kind.STRING)) is not None:
            values.append(token.value)
            if self.accept(Kind.COMMA) is None:
                break
        self.expect(Kind.RBRACE, "expected '}'")
        return tuple(values)
