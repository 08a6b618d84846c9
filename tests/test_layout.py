"""The shape a newcomer can find their way in: rooms of a size one can hold, and the run-dir
contract light enough for the report and Hydra's callbacks to import."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES, MAX_CLASS_LINES, MAX_MODULE_LINES = 60, 150, 400


def _modules():
    return sorted(p for p in (REPO / "sweep").rglob("*.py"))


def test_no_module_of_the_package_is_over_400_lines_no_class_over_150_and_no_function_over_60():
    too_long = []
    for path in _modules():
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            limit = {ast.ClassDef: MAX_CLASS_LINES}.get(type(node), MAX_FUNCTION_LINES)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {lines} lines")
    assert not too_long, "\n".join(too_long)


def test_no_module_edits_sys_path():
    edits = [str(p.relative_to(REPO)) for p in _modules() if "sys.path" in p.read_text()]
    assert not edits, f"modules that edit sys.path (install the project instead): {edits}"


def test_the_run_dir_contract_imports_neither_torch_nor_hydra():
    heavy = ("torch", "transformers", "hydra", "omegaconf", "pandas", "datasets")
    code = f"import sys, sweep.rundir; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert loaded.stdout.strip() == "[]"
