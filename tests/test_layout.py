"""The repository's layout: the product apart from its dev tools, and tests that need nothing outside the repository.

cloudprovisioner/ is the product, the only package the wheel (`make install`) ships. docloud/ (the local
cloud API) and devtools/ (throwaway MariaDB and Apache, fixtures) sit beside it: they may import the product,
never the other way round.
"""

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from tests import doschema

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ROOT / "cloudprovisioner"
# The installed command shims are product code too (Makefile SHIMS).
SHIMS = ("cgi-bin/api", "monitor/monitor_new_node", "monitor/send_mail", "bin/cloudprovisioner-admin")
NOT_PRODUCT = ("docloud", "devtools", "tests")
LEFT_OUT_OF_THE_COPY = (".venv", ".git", "__pycache__", ".hypothesis", "build", "*.egg-info", ".pytest_cache")


def build_wheel(tmp_path):
    """The wheel `make install` installs, built as it builds it (pip, here from a copy of the tree)."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LEFT_OUT_OF_THE_COPY), symlinks=True)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
                            "--wheel-dir", str(tmp_path / "wheel"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    return zipfile.ZipFile(wheel)


def test_the_wheel_holds_the_product_and_nothing_else(tmp_path):
    wheel = build_wheel(tmp_path)
    names = wheel.namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"cloudprovisioner", "cloudprovisioner-0.1.0.dist-info"}, top
    shipped = {name.removeprefix("cloudprovisioner/") for name in names if name.startswith("cloudprovisioner/")}
    assert shipped == {str(path.relative_to(PRODUCT)) for path in PRODUCT.rglob("*.py")} | {"openapi.json"}
    for name in shipped:
        assert not any(word in name for word in ("sandbox", "devstack", "seed", "test")), name
    assert wheel.read("cloudprovisioner-0.1.0.dist-info/top_level.txt").split() == [b"cloudprovisioner"]


def imported_modules(path):
    """Modules a file imports (absolute imports), or names as strings for a lazy import ("pkg.mod:func")."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value.partition(":")[0]


def imports_of(files, packages):
    return sorted(f"{path.relative_to(ROOT)}: {module}" for path in files for module in imported_modules(path)
                  if module.split(".")[0] in packages)


def test_the_product_never_imports_the_dev_tools_or_the_tests():
    product = [*PRODUCT.rglob("*.py"), *(ROOT / shim for shim in SHIMS)]
    assert len(product) > 30
    assert imports_of(product, NOT_PRODUCT) == []


def test_the_dev_tools_never_import_the_tests():
    tools = [*(ROOT / "docloud").rglob("*.py"), *(ROOT / "devtools").rglob("*.py")]
    assert imports_of(tools, {"tests"}) == []
    # The local cloud API is standard library only: it starts fast, with any Python 3.11+.
    assert imports_of((ROOT / "docloud").rglob("*.py"), {"cloudprovisioner", "devtools"}) == []


def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_the_digitalocean_models_are_in_the_repository_and_complete(monkeypatch):
    monkeypatch.delenv("DO_OPENAPI_DIR", raising=False)
    models = doschema.openapi_dir().resolve()
    assert models.is_relative_to(ROOT)
    assert (models / "LICENSE").is_file() and (models / "README.md").is_file()
    files = list(models.rglob("*.yml"))
    assert files
    for path in files:
        for ref in refs(yaml.safe_load(path.read_text())):
            file_part = ref.partition("#")[0]
            if not file_part:  # within the same file
                continue
            target = (path.parent / file_part).resolve()
            assert target.is_relative_to(models) and target.is_file(), f"{path.relative_to(models)}: {ref}"


# -- the package's own import graph, and its layers -------------------------------------------------------------

ROUTE_STRING = __import__("re").compile(r"^([a-z_]+):[a-z_]+$")

# Top to bottom. A module may import its own layer or any layer below it, never one above.
LAYERS = (
    ("the HTTP layer", lambda name: name == "web" or name.startswith("web.")),
    ("the reconciler and the admin commands", {"monitor", "admin"}.__contains__),
    ("the domain", None),  # every module no other layer claims
    ("the store and the cloud", {"db", "leases", "provider"}.__contains__),
    ("settings, ids, errors and validation", {"__init__", "config", "ids", "errors", "validation"}.__contains__),
)


def layer_of(name):
    return next((rank for rank, (_, claims) in enumerate(LAYERS) if claims and claims(name)),
                next(rank for rank, (_, claims) in enumerate(LAYERS) if claims is None))


def product_modules():
    """{dotted name under the package ("servers", "web.servers", "web" for web/__init__.py): its file}."""
    found = {}
    for path in PRODUCT.rglob("*.py"):
        parts = path.relative_to(PRODUCT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)] = path
    return found


def product_imports():
    """{module: modules of the package it imports}: top-level and lazy imports, the package of every submodule
    imported, and the handler modules the route strings of web/app.py ("servers:create_server") name, which it
    imports on first use."""
    modules = product_modules()
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" and name != "__init__" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[:len(package) - node.level + 1]
                names = [alias.name for alias in node.names]  # `from .web import servers` imports web.servers
                targets = [node.module, *(f"{node.module}.{name}" for name in names)] if node.module else names
                found |= {".".join([*base, target]) for target in targets}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cloudprovisioner."):
                found.add(node.module.removeprefix("cloudprovisioner."))
            elif name == "web.app" and isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = ROUTE_STRING.match(node.value)
                if match:
                    found.add(f"web.{match.group(1)}")
        for target in list(found):  # importing a.b runs a/__init__.py first
            found |= {".".join(target.split(".")[:depth]) for depth in range(1, target.count(".") + 1)}
        graph[name] = found & set(modules) - {name}
    return graph


def a_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None
    return next((cycle for node in sorted(graph) if node not in state and (cycle := visit(node))), None)


def test_the_package_has_no_import_cycle():
    graph = product_imports()
    assert graph["web.app"] >= {"web.servers", "web.firewalls", "web.observability"}  # the route strings are read
    assert graph["web.servers"] >= {"servers", "web"}
    assert a_cycle(graph) is None, " -> ".join(a_cycle(graph))


def test_every_import_runs_down_the_layers():
    upward = sorted(f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                    for name, imported in product_imports().items() for target in imported
                    if layer_of(target) < layer_of(name))
    assert upward == []


def test_the_layers_are_as_drawn():
    assert [layer_of(name) for name in ("web.app", "web.servers", "monitor", "servers", "db", "errors")] == [
        0, 0, 1, 2, 3, 4]


def test_nothing_in_the_package_imports_the_wsgi_application():
    """web/app.py imports the handlers by name; a handler (or anything below) that imported it back would make
    the application and its handlers one knot again. They answer with web/responses.py."""
    assert [name for name, imported in product_imports().items() if "web.app" in imported] == []


HTTP_WORDS = {"request", "Request", "Problem", "Response", "start_response"}


def test_below_the_http_layer_nothing_speaks_http():
    """The domain, the store, the cloud and the reconciler take a context and raise domain errors: no request,
    no problem, no response, not even as a parameter's name."""
    spoken = []
    for name, path in product_modules().items():
        if layer_of(name) == 0:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            word = (node.id if isinstance(node, ast.Name) else node.arg if isinstance(node, ast.arg)
                    else node.attr if isinstance(node, ast.Attribute) else None)
            if word in HTTP_WORDS:
                spoken.append(f"{name}:{node.lineno}: {word}")
    assert spoken == []


def test_the_layer_checks_find_what_they_look_for():
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("web.anything") < layer_of("monitor") < layer_of("firewalls") < layer_of("db")
