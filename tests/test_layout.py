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


# ---------------------------------------------------------------- the house: rooms, floors, thin commands

COMMANDS = ("train", "collect", "predict", "export", "bench")  # the user's commands: sweep/<name>.py
MAX_COMMAND_LINES = 60
# the floors, lowest first: a module may import its own subpackage and the floors below it, never above
FLOORS = ("errors", "rundir", "config", "launch", "data", "model", "fit", "serve", "report", "job", "benchmarks")


def _room(module: str) -> str:
    """sweep.fit.loop -> fit; sweep.rundir -> rundir; sweep.train -> train."""
    return module.split(".")[1] if module.count(".") else module


def _imports():
    """{module: the sweep modules it imports}, from every import statement (those inside functions too)."""
    graph = {}
    for path in _modules():
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sweep":
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "sweep")
        graph[module] = found
    return graph


def test_the_commands_are_thin_and_no_library_module_imports_one():
    for name in COMMANDS:
        lines = len((REPO / "sweep" / f"{name}.py").read_text().splitlines())
        assert lines <= MAX_COMMAND_LINES, (
            f"sweep/{name}.py: {lines} lines (a command parses, calls the library, exits)"
        )
    commands = {f"sweep.{name}" for name in COMMANDS}
    upward = [f"{m} -> {i}" for m, imported in _imports().items() if m not in commands for i in imported & commands]
    assert not upward, f"library modules that import a command: {upward}"


def test_subpackages_are_nouns_with_a_docstring_only_init_and_no_command_name():
    packages = sorted(p.parent for p in (REPO / "sweep").glob("*/__init__.py"))
    assert {p.name for p in packages} == set(FLOORS) - {"errors", "rundir"}, [p.name for p in packages]
    for package in packages:
        body = ast.parse((package / "__init__.py").read_text()).body
        docstring_only = len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
        assert docstring_only, f"{package.name}/__init__.py re-exports or runs code: its modules are imported by name"
        assert package.name not in COMMANDS, f"sweep/{package.name}/ would shadow sweep/{package.name}.py"


def test_no_circles_and_no_import_from_a_higher_floor():
    graph = _imports()
    higher = [
        f"{m} -> {i}"
        for m, imported in graph.items()
        for i in imported
        if _room(m) in FLOORS and _room(i) != _room(m) and FLOORS.index(_room(i)) > FLOORS.index(_room(m))
    ]
    assert not higher, f"imports from a higher floor ({' < '.join(FLOORS)}): {higher}"
    state = {}

    def visit(module, path):
        state[module] = "open"
        for imported in graph.get(module, ()):
            assert state.get(imported) != "open", f"a circle: {' -> '.join(path[path.index(imported) :] + [imported])}"
            if imported not in state:
                visit(imported, path + [imported])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_every_error_a_user_can_cause_is_defined_in_sweep_errors():
    errors_module = ast.parse((REPO / "sweep" / "errors.py").read_text())
    user_errors = {node.name for node in errors_module.body if isinstance(node, ast.ClassDef)}
    elsewhere = [
        f"{path.relative_to(REPO)}: {node.name}"
        for path in _modules()
        if path.name != "errors.py" or path.parent.name != "sweep"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and any(getattr(base, "id", None) in user_errors for base in node.bases)
    ]
    assert not elsewhere, f"user errors outside sweep/errors.py: {elsewhere}"


def test_the_training_loop_is_two_hops_from_the_command():
    """sweep/train.py -> sweep/job/runner.py (the job) -> sweep/fit/loop.py, which iterates an epoch's
    batches and steps the optimizer."""
    graph = _imports()
    assert "sweep.job.runner" in graph["sweep.train"] and "sweep.fit.loop" in graph["sweep.job.runner"]
    loop = ast.parse((REPO / "sweep" / "fit" / "loop.py").read_text())
    steps = [
        call
        for node in ast.walk(loop)
        if isinstance(node, ast.For)
        for call in ast.walk(node)
        if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "step"
    ]
    assert steps, "sweep/fit/loop.py iterates no batches into optimizer steps"


def test_config_and_serving_stay_light():
    """The config's vocabulary imports neither Hydra nor torch; serving an ONNX export imports no torch."""
    heavy = ("torch", "transformers", "hydra", "omegaconf", "datasets")
    code = (
        "import sys, sweep.config.schema, sweep.config.rules, sweep.config.metrics, sweep.config.neutral, "
        f"sweep.serve.onnx_runtime; print([m for m in {heavy!r} if m in sys.modules])"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert loaded.stdout.strip() == "[]"
