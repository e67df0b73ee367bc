"""The package's layering (docs/architecture.md), checked on the source: every module imports ptnl
modules only from its own layer or below, there are no import cycles, and no module reaches into
another module's private names."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ptnl"

# Lowest first. A module's layer is its top folder under ptnl/.
LAYERS = ("core", "data", "models", "train", "report", "sections", "tools")
# The one module beside the folders: `python -m ptnl` needs ptnl/__main__.py, which runs the CLI.
TOP_MODULES = {"ptnl.__main__": "tools"}
# What the package root may import, and why.
ROOT_IMPORTS = {("ptnl", "ptnl.core.numerics"): "the kernels are pinned before torch or numpy computes"}
# Private names one module may take from another, and why.
ALLOWED_PRIVATE = {
    # world.py is frozen: its sha256 is recorded in the shipped toy checkpoints (tests/test_toy.py).
    (
        "ptnl.tools.toy.pretrain",
        "ptnl.data.toy.world._blur",
    ): "the web camera blurs as the world's camera does",
    (
        "ptnl.tools.toy.snapshots",
        "ptnl.tools.toy.pretrain._world_hash",
    ): "a snapshot records its world, as a checkpoint does",
}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def layer(module: str) -> int:
    if module == "ptnl":
        return -1  # the package root: the version, and the numeric path applied before anything computes
    top = TOP_MODULES.get(module, module.split(".")[1])
    assert top in LAYERS, f"{module}: its top folder under ptnl/ is none of the layers {LAYERS}"
    return LAYERS.index(top)


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported ptnl module, imported names, line) for every import in ``module``, wherever it is."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("ptnl")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if not base.startswith("ptnl"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in MODULES:  # `from ptnl.train import engine`
                    out.append((sub, [], node.lineno))
                else:
                    out.append((base, [a.name], node.lineno))
    return out


def test_every_module_is_in_a_layer():
    assert all(layer(m) >= -1 for m in MODULES)  # raises, naming the module, for a folder in no layer


def test_every_module_imports_only_its_own_layer_or_below():
    bad = []
    for module in MODULES:
        for target, _, line in _imports(module):
            if target == "ptnl" or (module, target) in ROOT_IMPORTS:
                continue
            if layer(target) > layer(module):
                bad.append(f"{module}:{line} imports {target} (layer {layer(target)} > {layer(module)})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    # A package's __init__ importing its submodules, which import the package, is no cycle.
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t) :] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_no_module_reaches_into_another_modules_private_names():
    bad = []
    for module in MODULES:
        for target, names, line in _imports(module):
            private = [
                n
                for n in names
                if n.startswith("_")
                and not n.startswith("__")
                and (module, f"{target}.{n}") not in ALLOWED_PRIVATE
            ]
            if private and target != module:
                bad.append(f"{module}:{line} imports {', '.join(private)} from {target}")
        tree = ast.parse(MODULES[module].read_text())
        aliases = {
            a.asname or a.name: f"{n.module}.{a.name}"
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("ptnl")
            for a in n.names
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and aliases[node.value.id] in MODULES
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and (module, f"{aliases[node.value.id]}.{node.attr}") not in ALLOWED_PRIVATE
            ):
                bad.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not bad, "\n".join(bad)
