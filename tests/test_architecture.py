"""The package's layers (onedva_codec/__init__.py): no module imports from a layer below it in that list
(an "upward" import), and no modules import each other in a circle. Lazy imports inside functions count;
imports for type checking only do not."""

import ast
from pathlib import Path

import onedva_codec

PACKAGE = Path(onedva_codec.__file__).parent
LAYERS = [  # lowest first; a module may import from its own layer or any earlier one
    ["errors", "version"],
    ["video"],
    ["bitstream"],
    ["model"],
    ["runtime"],
    ["coding"],
    ["codec"],
    ["evaluation"],
    ["cli", "launch", "__main__", "__init__"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def layer(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def imports(path: Path) -> set[str]:
    """Modules of the package that `path` imports, by name relative to the package."""
    tree = ast.parse(path.read_text())
    skipped = {id(node) for statement in ast.walk(tree) if isinstance(statement, ast.If)
               and "TYPE_CHECKING" in ast.unparse(statement.test) for node in ast.walk(statement)}
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("onedva_codec"):
                target = node.module.split(".")[1:]
            else:
                continue
            names = [target + [alias.name] for alias in node.names]  # `from .x import module` or a name
            found.update(".".join(n) if _exists(n) else ".".join(target) for n in names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".", 1)[1] for alias in node.names
                         if alias.name.startswith("onedva_codec."))
    return {name for name in found if name}


def _exists(parts: list[str]) -> bool:
    path = PACKAGE.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports(path) - {module_name(path)} for path in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer_and_imports_nothing_above_its_own():
    upward = [f"{module} -> {target}" for module, targets in graph().items() for target in targets
              if layer(target) > layer(module)]
    assert not upward, upward


def test_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                return path + [module, target]
            if target not in state and (circle := visit(target, path + [module])):
                return circle
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state:
            circle = visit(module, [])
            assert circle is None, " -> ".join(circle)


def test_the_checker_sees_lazy_and_relative_imports():
    edges = graph()
    assert "runtime.engine" in edges["coding.encoding"]  # relative, two dots
    assert "evaluation.compare" in edges["cli"]  # `from .evaluation import compare as ...`, inside a function
    assert "bitstream.latent_coding" in edges["bitstream.ratecontrol"]  # lazy, inside a function
