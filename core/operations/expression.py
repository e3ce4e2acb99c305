"""Validating band-math expressions before any work starts.

An expression is parsed with :mod:`ast` and every node is checked against a
small grammar: numbers, the input names, arithmetic, comparisons, ``&``,
``|``, ``~``, and calls of a fixed list of element-wise numexpr functions.
Anything else (attributes, subscripts, strings, lambdas, keyword arguments,
unknown names or functions) is refused with one message naming it.

numexpr then compiles the checked text, and to do so it runs Python's ``eval``
on it (with only the input names and its functions in scope): Python itself
computes the constant parts, such as ``10 ** 10 ** 10``, and numexpr's compiler
recurses once per level of nesting. So the constant parts are computed here
first, with bounds (a whole number must fit in 64 bits, a float must be finite,
no division by zero), and the nesting depth is limited, so that no expression
can keep numexpr busy or exhaust Python's recursion.
"""

from __future__ import annotations

import ast
import copy
import math
import operator
import sys
from typing import Iterable, Mapping, Optional, Set, Union

from ..errors import ExpressionError

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
#: numexpr's compiler recurses about twice per level (it fails near 500 levels at Python's default
#: recursion limit of 1000); the parser refuses more than 200 nested parentheses anyway.
MAX_DEPTH = 200
#: Constants numexpr can hold: whole numbers in 64 bits, finite 64-bit floats.
MAX_WHOLE = 2 ** 63 - 1
MAX_FLOAT = sys.float_info.max
#: numexpr's compiler doubles a constant exponent to look for half-integer powers.
MAX_EXPONENT = MAX_FLOAT / 2
Number = Union[int, float]


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
    _check_depth(tree)
    _fold(tree.body)
    return used


def _check_depth(tree: ast.Expression) -> None:
    """Refuse nesting deeper than numexpr's compiler can recurse (iteratively: no recursion here)."""
    deepest = 0
    todo = [(tree.body, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))
    if deepest > MAX_DEPTH:
        raise ExpressionError(f"The expression nests {deepest} operations deep; numexpr handles at most "
                              f"{MAX_DEPTH}. Group long sums or products with parentheses, e.g. "
                              "(A + B + C) + (D + E + F), or compute them in steps.")


def _fold(node: ast.AST) -> Optional[Number]:
    """The value of a constant sub-expression (None where an input is involved), computed within
    numexpr's limits; raise :class:`ExpressionError` for a constant numexpr cannot hold or that
    would take Python long to compute. Called after :func:`_check_depth` (bounded recursion).

    >>> _fold(ast.parse("2 ** 10 * 3", mode="eval").body)
    3072
    >>> _fold(ast.parse("A + 10 ** 10 ** 10", mode="eval").body)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    tilewise.core.errors.ExpressionError: The constant 10 ** 10 ** 10 is too large ...
    """
    if isinstance(node, ast.Constant):
        return _bounded(node, node.value)
    if isinstance(node, ast.UnaryOp):
        value = _fold(node.operand)
        if value is None or isinstance(node.op, ast.Invert):
            return None
        return _bounded(node, -value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BinOp):
        left, right = _fold(node.left), _fold(node.right)
        if isinstance(node.op, ast.Pow) and left is None and right is not None and abs(right) > MAX_EXPONENT:
            raise ExpressionError(f"The exponent {right:g} in {_quote(node)} is too large for numexpr "
                                  f"(at most {MAX_EXPONENT:.3g}).")
        if left is None or right is None:
            return None
        if isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            return _bit_operation(node.op, left, right)
        return _bounded(node, _compute(node, left, right))
    for child in ast.iter_child_nodes(node):   # calls, comparisons: their arguments may hold constants
        _fold(child)
    return None


_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
               ast.Mod: operator.mod, ast.Pow: operator.pow}


def _compute(node: ast.BinOp, left: Number, right: Number) -> Optional[Number]:
    """``left op right``, or None when the result is out of range (an int power is estimated
    first: Python would take ages over ``10 ** 10 ** 10``)."""
    if isinstance(node.op, ast.Pow) and isinstance(left, int) and isinstance(right, int) and right > 0 \
            and abs(left) > 1 and right * math.log2(abs(left)) > 64:
        return None
    try:
        return _ARITHMETIC[type(node.op)](left, right)
    except OverflowError:
        return None
    except ZeroDivisionError:
        raise ExpressionError(f"The constant {_quote(node)} divides by zero.") from None


def _bit_operation(op: ast.operator, left: Number, right: Number) -> Optional[Number]:
    if isinstance(left, int) and isinstance(right, int):   # cheap, and no larger than its operands
        return left & right if isinstance(op, ast.BitAnd) else left | right
    return None                                              # numexpr reports floats itself


def _bounded(node: ast.AST, value: Optional[Number]) -> Number:
    text = _quote(node)
    if isinstance(value, complex):
        raise ExpressionError(f"The constant {text} is not a real number.")
    if value is None or (isinstance(value, int) and abs(value) > MAX_WHOLE) or \
            (isinstance(value, float) and not math.isfinite(value)):
        kind = "whole numbers must fit in 64 bits (write a float, e.g. 2.0 ** 70)" if _whole(node) else \
            f"numbers must lie within +-{MAX_FLOAT:.3g}"
        raise ExpressionError(f"The constant {text} is too large: {kind}.")
    return value


def _quote(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _whole(node: ast.AST) -> bool:
    return all(not isinstance(n, ast.Constant) or isinstance(n.value, int) for n in ast.walk(node))


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


def substitute(expression: str, replacements: Mapping[str, str]) -> str:
    """The (checked) ``expression`` rewritten as Python writes it, each input name in
    ``replacements`` replaced by its sub-expression (a function's name is never replaced).
    numexpr reads the text back into the same tree: only the spelling changes (no comments,
    canonical spacing and parentheses).

    >>> substitute("(B - A) / (B + A)  # NDVI", {"A": "A * s + o"})
    '(B - (A * s + o)) / (B + (A * s + o))'
    """
    parts = {name: ast.parse(text, mode="eval").body for name, text in replacements.items()}

    class _Replace(ast.NodeTransformer):
        def visit_Call(self, node: ast.Call) -> ast.AST:
            node.args = [self.visit(a) for a in node.args]
            return node

        def visit_Name(self, node: ast.Name) -> ast.AST:
            return copy.deepcopy(parts[node.id]) if node.id in parts else node

    tree = _Replace().visit(ast.parse(expression.strip(), mode="eval"))
    return ast.unparse(ast.fix_missing_locations(tree))
