"""Package layout (issue #14 item 1): no import cycles among hqdepth modules, one `resize_bilinear`.

The import graph is built with `ast` from every `import` statement of hqdepth/**/*.py, at module level and
inside functions (a lazy import is still a dependency: `predict` importing `evaluation` inside a method while
`evaluation` imported `predict` was the cycle this test guards against). `from X import Y` is an edge to X.Y
when that is a module, else to X; the implicit import of parent packages is not counted.
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hqdepth"

# Edges allowed to close a cycle, each a lazy (function-level) import by design. The test checks that each
# still exists and is still lazy, so the list cannot hide a new cycle or outlive the one it names.
ALLOWED_LAZY_EDGES = {
    # Source kinds register themselves when imported; `open_source` imports them all on first use.
    ("hqdepth.data.base", "hqdepth.data._register_all"),
    # `train` hands multi-worker runs to `training.multiworker`, which builds on the trainer's pieces.
    ("hqdepth.training.trainer", "hqdepth.training.multiworker"),
}


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path, name):
    """{(imported hqdepth module, is_top_level)} of one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    # statements of module-level `if`/`try` blocks run at import time too
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):
            top.update(id(child) for child in ast.walk(node))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                base = f"{parent}.{base}" if base else parent
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target.startswith("hqdepth") and target != name:
                found.add((target, id(node) in top))
    return found


def import_graph():
    """{module: {imported module: True if any import of it is at module level}}."""
    graph = {}
    for name, path in MODULES.items():
        edges = {}
        for target, top in _imports(path, name):
            edges[target] = edges.get(target, False) or top
        graph[name] = edges
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, components, counter = {}, {}, [], set(), [], [0]

    def visit(root):
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return components


def test_graph_helper_finds_cycles():
    assert _cycles({"a": {"b": True}, "b": {"c": False}, "c": {"a": True}, "d": {"a": True}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": True}, "b": {}}) == []


def test_no_import_cycles_among_hqdepth_modules():
    graph = import_graph()
    for source, target in ALLOWED_LAZY_EDGES:
        assert target in graph[source], f"allowed edge {source} -> {target} no longer exists: drop it from the list"
        assert graph[source][target] is False, f"{source} -> {target} must stay a lazy (function-level) import"
    pruned = {name: {t: top for t, top in edges.items() if (name, t) not in ALLOWED_LAZY_EDGES}
              for name, edges in graph.items()}
    cycles = _cycles(pruned)
    details = [" / ".join(f"{m} -> {sorted(set(pruned[m]) & set(c))}" for m in c) for c in cycles]
    assert not cycles, "import cycles among hqdepth modules:\n" + "\n".join(details)


def test_the_split_rooms_do_not_import_each_other_backwards():
    graph = import_graph()
    assert "hqdepth.evaluation" not in graph["hqdepth.metrics"]
    for module in ("hqdepth.predict", "hqdepth.depth_model", "hqdepth.images", "hqdepth.camera",
                   "hqdepth.pointcloud", "hqdepth.inputs", "hqdepth.resample", "hqdepth.protocols"):
        assert not {"hqdepth.evaluation", "hqdepth.evaluator", "hqdepth.model_testing", "hqdepth.pairs"} & set(
            graph[module]), module


def test_importing_one_side_does_not_load_the_other():
    code = (
        "import sys\n"
        "import hqdepth.predict\n"
        "loaded = [m for m in ('hqdepth.evaluation', 'hqdepth.evaluator', 'hqdepth.model_testing', 'tensorflow',"
        " 'keras') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "import hqdepth.metrics\n"
        "assert 'hqdepth.evaluation' not in sys.modules and 'hqdepth.evaluator' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_one_resize_bilinear():
    """The Keras op `hqdepth.layers.resize.resize_bilinear` is the only function of that name; the NumPy
    resizes say which reference they reproduce (`hqdepth.resample`: _tf, _cv2, _tf1, _align_corners, _pil)."""
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "resize_bilinear":
                found.append(name)
    assert found == ["hqdepth.layers.resize"], found
    numpy_resizes = sorted(
        node.name for node in ast.parse((PACKAGE / "resample.py").read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef))
    assert numpy_resizes == ["resize_bilinear_align_corners", "resize_bilinear_cv2", "resize_bilinear_pil",
                             "resize_bilinear_tf", "resize_bilinear_tf1", "resize_nearest_pil"]
