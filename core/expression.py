"""Validating band-math expressions before any work starts.

An expression is parsed with :mod:`ast` and every node is checked against a
small grammar: numbers, the input names, arithmetic, comparisons, ``&``,
``|``, ``~``, and calls of a fixed list of element-wise numexpr functions.
Anything else (attributes, subscripts, strings, lambdas, keyword arguments,
unknown names or functions) is refused with one message naming it. Nothing in
an expression is ever handed to Python's ``eval``; numexpr compiles it.
"""

from __future__ import annotations

import ast
from typing import Iterable, Optional, Set

from .errors import ExpressionError

ELEMENTWISE = (
    "where", "abs", "sqrt", "exp", "expm1", "log", "log10", "log1p", "log2",
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh",
    "arcsinh", "arccosh", "arctanh", "floor", "ceil", "round", "trunc", "sign", "hypot", "fmod",
    "minimum", "maximum", "isnan", "isfinite", "isinf", "copysign",
)
_ARITY = {"where": 3, "arctan2": 2, "hypot": 2, "fmod": 2, "minimum": 2, "maximum": 2, "copysign": 2}
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.BitAnd, ast.BitOr)
_UNARY = (ast.UAdd, ast.USub, ast.Invert)
_CMPS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
MAX_LENGTH = 2000


def available_functions() -> Set[str]:
    """The element-wise functions this numexpr provides (older releases lack a few)."""
    try:
        import numexpr
        known = set(numexpr.expressions.functions)
    except ImportError:  # validation still works without numexpr; evaluation will not
        known = set(ELEMENTWISE)
    return {f for f in ELEMENTWISE if f in known}


def validate_expression(expression: str, names: Iterable[str], functions: Optional[Set[str]] = None) -> Set[str]:
    """Check ``expression`` against the grammar; return the input names it uses.

    >>> sorted(validate_expression("where(B > 0, (B - A) / (B + A), -1)", ["A", "B"]))
    ['A', 'B']
    >>> validate_expression("A.__class__", ["A"])  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    tilewise.core.errors.ExpressionError: Attribute access ('.__class__') is not allowed in an expression.
    """
    allowed = set(names)
    text = (expression or "").strip()
    if not text:
        raise ExpressionError("The expression is empty.")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"The expression is longer than {MAX_LENGTH} characters.")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        where = f" at character {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"Syntax error in the expression{where}: {exc.msg}.") from None
    if functions is None:
        functions = available_functions()
    used: Set[str] = set()
    callees: Set[int] = set()
    for node in ast.walk(tree):  # breadth first: a call is seen before its function name
        _check_node(node, allowed, functions, used, callees)
    if not used:
        raise ExpressionError("The expression uses no input; name at least one of " + ", ".join(sorted(allowed)) + ".")
    return used


def _check_node(node, allowed, functions, used, callees) -> None:
    if isinstance(node, (ast.Expression, ast.Load)) or isinstance(node, _BINOPS + _UNARY + _CMPS):
        return
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, _BINOPS):
            raise ExpressionError(f"The operator {_op_name(node.op)} is not allowed in an expression.")
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, _UNARY):
            raise ExpressionError("'not' is not allowed; use ~ for logical not.")
        return
    if isinstance(node, ast.Compare):
        if len(node.ops) > 1:  # Python reads A < B < C as (A < B) and (B < C): numexpr cannot
            raise ExpressionError("Chained comparisons like A < B < C are not allowed; "
                                  "write (A < B) & (B < C).")
        for op in node.ops:
            if not isinstance(op, _CMPS):
                raise ExpressionError(f"The comparison {_op_name(op)} is not allowed in an expression.")
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"Only numbers are allowed as constants, not {node.value!r}.")
        return
    if isinstance(node, ast.Name):
        if node.id in allowed:
            used.add(node.id)
            return
        if node.id in functions and id(node) in callees:
            return
        if node.id in functions:
            raise ExpressionError(f"The function '{node.id}' must be called, e.g. {node.id}(A).")
        raise ExpressionError(f"Unknown name '{node.id}' in the expression; the inputs are "
                              f"{', '.join(sorted(allowed))}.")
    if isinstance(node, ast.Call):
        _check_call(node, functions)
        callees.add(id(node.func))
        return
    if isinstance(node, ast.Attribute):
        raise ExpressionError(f"Attribute access ('.{node.attr}') is not allowed in an expression.")
    if isinstance(node, ast.Subscript):
        raise ExpressionError("Indexing ([...]) is not allowed in an expression.")
    if isinstance(node, ast.BoolOp):
        raise ExpressionError("'and' / 'or' are not allowed; use & and | with parentheses, "
                              "e.g. (A > 0) & (B < 1).")
    raise ExpressionError(f"{type(node).__name__} is not allowed in an expression.")


def _check_call(node: ast.Call, functions) -> None:
    if not isinstance(node.func, ast.Name):
        raise ExpressionError(f"Calling '{ast.unparse(node.func)}' is not allowed; "
                              "only plain function calls like sqrt(A) are.")
    name = node.func.id
    if name not in functions:
        raise ExpressionError(f"Unknown function '{name}'; available: {', '.join(sorted(functions))}.")
    if node.keywords:
        raise ExpressionError(f"Keyword arguments are not allowed (in {name}).")
    want = _ARITY.get(name, 1)
    if len(node.args) != want:
        raise ExpressionError(f"{name}() takes {want} argument(s), got {len(node.args)}.")


def _op_name(op) -> str:
    return type(op).__name__
