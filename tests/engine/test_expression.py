"""Band-math expressions: malicious or malformed ones are refused, with a message naming the
problem, before any work: no output, no work folder, no probe file, nothing executed."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tilewise.core.operations.bandmath import bandmath
from tilewise.core.errors import ExpressionError, ParameterError
from tilewise.core.operations.expression import MAX_LENGTH, validate_expression

from support import leftovers
from test_cli import tilewise_cli
from test_driver import run_driver

# expression -> a part of the message it must be refused with
REFUSED = {
    "__import__('os').system('touch x')": "Calling '__import__('os').system' is not allowed",
    "A.__class__": "Attribute access ('.__class__') is not allowed",
    "().__class__": "Attribute access ('.__class__') is not allowed",
    "A.real": "Attribute access ('.real') is not allowed",
    "A.__class__.__bases__[0].__subclasses__()": "Calling 'A.__class__.__bases__[0].__subclasses__' is not allowed",
    "open('f')": "Unknown function 'open'; available: abs,",
    "exec('1')": "Unknown function 'exec'",
    "getattr(A, 'real')": "Unknown function 'getattr'",
    "A[0]": "Indexing ([...]) is not allowed",
    "(A + B": "Syntax error in the expression at character 1: '(' was never closed",
    "A = 1": "Syntax error in the expression",
    "C": "Unknown name 'C' in the expression; the inputs are A, B",
    "__builtins__": "Unknown name '__builtins__'",
    "lambda: 1": "Lambda is not allowed",
    '"string"': "Only numbers are allowed as constants, not 'string'",
    "True + A": "Only numbers are allowed as constants, not True",
    "A and B": "'and' / 'or' are not allowed; use & and |",
    "not A": "'not' is not allowed; use ~",
    "sqrt(A, B)": "sqrt() takes 1 argument(s), got 2",
    "where(A > 0, B)": "where() takes 3 argument(s), got 2",
    "A if B else 1": "IfExp is not allowed",
    "sqrt": "The function 'sqrt' must be called, e.g. sqrt(A)",
    "where(A > 0, B, x=1)": "Keyword arguments are not allowed (in where)",
    "A // B": "The operator FloorDiv is not allowed",
    "A is B": "The comparison Is is not allowed",
    "[x for x in A]": "ListComp is not allowed",
    "(y := A)": "NamedExpr is not allowed",
    'f"{A}"': "JoinedStr is not allowed",
    "A < B < 1": "Chained comparisons like A < B < C are not allowed",
    "2 + 3": "The expression uses no input; name at least one of A, B",
    "   ": "The expression is empty",
    "A" + " + A" * MAX_LENGTH: f"longer than {MAX_LENGTH} characters",
}
# Within the grammar, but numexpr has no such operation on float bands: refused when planning.
REFUSED_BY_NUMEXPR = {
    "~A": "numexpr cannot evaluate the expression",
    "A & B": "numexpr cannot evaluate the expression",
    "where(A, B, 1)": "numexpr cannot evaluate the expression",
}
ACCEPTED = {
    "(B - A) / (B + A)": {"A", "B"},
    "where((B + A) != 0, (B - A) / (B + A), -1)": {"A", "B"},
    "2.5 * (B - A) / (B + 6 * A - 7.5 * A + 1)": {"A", "B"},
    "sqrt(abs(A)) + hypot(A, B) ** 2 % 3": {"A", "B"},
    "(A > 0) & ~(B < 1) | isnan(B)": {"A", "B"},
    "-A * 1e-3 + +1": {"A"},
}


def short(expression):
    """A readable test id for a long expression."""
    return expression if len(expression) <= 50 else f"{expression[:20]}...({len(expression)} characters)"


@pytest.mark.parametrize("expression", list(REFUSED), ids=short)
def test_validation_refuses(expression):
    with pytest.raises(ExpressionError) as info:
        validate_expression(expression, ["A", "B"])
    message = str(info.value)
    assert REFUSED[expression] in message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("expression", list(ACCEPTED))
def test_validation_accepts_and_names_the_inputs_used(expression):
    assert validate_expression(expression, ["A", "B"]) == ACCEPTED[expression]


@pytest.fixture
def scene(tmp_path, raster):
    """A 4-band uint16 scene in tmp_path/in; outputs go to the empty folder tmp_path/out."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    rng = np.random.default_rng(4)
    return raster("in/scene.tif", rng.integers(1, 10000, (4, 30, 40)).astype("uint16"), nodata=0)


def refused_before_any_work(expression, inputs, output):
    """``bandmath`` raises an ExpressionError and leaves the output folder as it was (empty)."""
    folder = os.path.dirname(output)
    with pytest.raises(ParameterError) as info:
        bandmath(inputs, expression, output, tile_size=16, workers=1)
    assert type(info.value) is ExpressionError, repr(info.value)
    assert os.listdir(folder) == []                      # no output, no work folder, no probe file
    assert leftovers(output) == []
    return str(info.value)


@pytest.mark.parametrize("expression", list(REFUSED) + list(REFUSED_BY_NUMEXPR), ids=short)
def test_api_refuses_before_any_work(scene, tmp_path, expression):
    output = str(tmp_path / "out" / "result.tif")
    message = refused_before_any_work(expression, {"A": (scene, 3), "B": (scene, 4)}, output)
    assert {**REFUSED, **REFUSED_BY_NUMEXPR}[expression] in message


@pytest.mark.parametrize("expression", ["A.__class__", "open('f')", "C"])
def test_expression_is_checked_before_the_inputs_are_opened(tmp_path, expression):
    (tmp_path / "out").mkdir()
    missing = str(tmp_path / "not-there.tif")
    refused_before_any_work(expression, {"A": (missing, 3), "B": (missing, 4)}, str(tmp_path / "out" / "r.tif"))


def injections(target):
    """Expressions that would create ``target`` if any part of them were run as Python."""
    return [f"__import__('os').system('touch {target}')",
            f"exec(\"open('{target}', 'w')\")",
            f"open('{target}', 'w').close()",
            f"A.__class__.__base__.__subclasses__()[0]('{target}')",
            f"[open('{target}', 'w') for A in (1,)]"]


def test_injection_through_the_api_runs_nothing(scene, tmp_path):
    target = tmp_path / "pwned"
    for expression in injections(target):
        refused_before_any_work(expression, {"A": (scene, 3), "B": (scene, 4)}, str(tmp_path / "out" / "r.tif"))
    assert not target.exists()


CLI_CASES = ["A.__class__", "(A + B", "C", "A and B", "sqrt(A, B)", "where(A > 0, B, x=1)", "lambda: 1", "~A"]


@pytest.mark.parametrize("expression", CLI_CASES)
def test_cli_refuses_with_exit_code_2_and_one_error_line(scene, tmp_path, expression):
    proc = tilewise_cli("calc", "-q", "-e", expression, "A=../in/scene.tif:3", "B=../in/scene.tif:4",
                        "-o", "result.tif", cwd=tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tilewise: error: ")
    assert {**REFUSED, **REFUSED_BY_NUMEXPR}[expression] in lines[0]
    assert os.listdir(tmp_path / "out") == []


def test_injection_through_the_cli_runs_nothing(scene, tmp_path):
    target = tmp_path / "pwned"
    for expression in injections(target):
        proc = tilewise_cli("calc", "-q", "-e", expression, f"A={scene}:3", "-o", "result.tif", cwd=tmp_path / "out")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("tilewise: error: ")
    assert not target.exists()
    assert os.listdir(tmp_path / "out") == []


def test_engine_driver_reports_an_expression_error(scene, tmp_path):
    """What QGIS receives when a bad expression reaches the engine: one error event, nothing written."""
    job = tmp_path / "job.json"
    target = tmp_path / "pwned"
    output = str(tmp_path / "out" / "r.tif")
    job.write_text(json.dumps({"operation": "bandmath", "params": {
        "inputs": {"A": [scene, 3], "B": [scene, 4]}, "expression": injections(target)[0], "output": output}}))
    proc, events = run_driver(job, cwd=tmp_path)
    assert proc.returncode == 2
    assert [e["event"] for e in events] == ["error"]
    assert events[0]["kind"] == "ExpressionError"
    assert "is not allowed; only plain function calls like sqrt(A) are" in events[0]["message"]
    assert os.listdir(tmp_path / "out") == [] and not target.exists()
