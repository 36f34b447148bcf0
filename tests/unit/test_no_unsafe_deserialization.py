"""No pickle, unsafe YAML, shell or eval anywhere in ``src/`` (read from the syntax tree).

Pickle bodies (BentoML), pickle over worker sockets (the "ShadowMQ" family) and
type-instantiating YAML loaders (TorchServe's SnakeYAML) were remote code execution in
peer servers. The check parses every module, so words in docstrings do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal"}
FORBIDDEN_CALLS = {
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("yaml", "full_load"),
    ("yaml", "load_all"),
    ("yaml", "unsafe_load_all"),
    ("os", "system"),
    ("os", "popen"),
}


def _violations(path: Path, root: Path = SRC) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    where = f"{path.relative_to(root)}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where}:{node.lineno} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{where}:{node.lineno} imports from {node.module}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("eval", "exec"):
                found.append(f"{where}:{node.lineno} calls {func.id}()")
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and (func.value.id, func.attr) in FORBIDDEN_CALLS
            ):
                found.append(f"{where}:{node.lineno} calls {func.value.id}.{func.attr}()")
            for keyword in node.keywords:
                unsafe_flag = keyword.arg in ("shell", "allow_pickle")
                if unsafe_flag and isinstance(keyword.value, ast.Constant) and keyword.value.value:
                    found.append(f"{where}:{node.lineno} passes {keyword.arg}=True")
                weights_only = keyword.arg == "weights_only"
                if (
                    weights_only
                    and isinstance(keyword.value, ast.Constant)
                    and not keyword.value.value
                ):
                    found.append(f"{where}:{node.lineno} passes weights_only=False")
    return found


def test_source_tree_has_no_unsafe_deserialization() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    violations = [v for path in files for v in _violations(path)]
    assert violations == []


def test_the_check_catches_what_it_looks_for(tmp_path: Path) -> None:
    """Negative control: a module with every forbidden form is caught."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import pickle\nfrom marshal import loads\nimport yaml, os, subprocess\n"
        "yaml.load(s)\nos.system('x')\neval('1')\nsubprocess.run('x', shell=True)\n"
        "numpy.load(f, allow_pickle=True)\ntorch.load(f, weights_only=False)\n"
    )
    assert len(_violations(probe, tmp_path)) == 8
