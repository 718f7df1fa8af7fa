"""Guard rails on how the code is laid out (ARCHITECTURE.md): imports point down only, the
request package stays pure, and modules stay small.

The import graph is read from the source (AST), so an import inside a function counts as
much as one at the top: a function-level import that hides a cycle is still a cycle.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "webui"

# Cycles that exist today and are to be removed (each: the modules of one strongly connected
# component); a new cycle, or a known one that grows, fails. None are left.
KNOWN_CYCLES: list[frozenset[str]] = []

MAX_LINES = 400
# Modules over MAX_LINES, with their line counts: to be split; none may grow. None are left.
OVERSIZED: dict[str, int] = {}
# Data, not code: tables that are long because the data is.
DATA_FILES = {"webui/i18n.py"}

HEAVY = ("torch", "cv2", "gradio", "diffusers", "transformers")
# What the request package may import from webui, directly or through each other.
REQUEST_MAY_IMPORT = {"webui.errors", "webui.validate", "webui.settings", "webui.samplers_names", "webui.atomic_files",
                      "webui.imaging", "webui.imaging.images", "webui.metadata", "webui.metadata.uploads",
                      "webui.metadata.png_chunks", "webui.metadata.infotext", "webui.metadata.infotext_syntax",
                      "webui.metadata.infotext_entries"}


# ---- the import graph --------------------------------------------------------------------------

def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file; a package is named by its __init__.py ("webui.request")."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _targets(node: ast.AST, here: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    """The modules of this package that one import statement loads. `from P import x` is P.x
    when that is a module, else P; importing a package is importing its __init__."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = here.split(".") if is_package else here.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        base = ".".join(base + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its source (functions included)."""
    modules = module_files(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            for target in _targets(node, name, path.name == "__init__.py", modules):
                while target and target not in modules:  # a name in a module: that module
                    target = target.rpartition(".")[0]
                if not target or target == package.name:
                    continue
                # `import webui.request.face` also runs webui/request/__init__.py: the packages
                # on the way count too, except those the importing module is inside of.
                parts = target.split(".")
                for i in range(2, len(parts) + 1):
                    step = ".".join(parts[:i])
                    if step in modules and step != name and not name.startswith(step + "."):
                        deps.add(step)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
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
                component = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.add(m)
                    if m == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _describe(component: frozenset[str], graph: dict[str, set[str]]) -> str:
    edges = [f"{a} -> {b}" for a in sorted(component) for b in sorted(graph[a] & component)]
    return "{" + ", ".join(sorted(component)) + "}: " + "; ".join(edges)


def test_no_new_import_cycles():
    graph = import_graph()
    assert "webui.request" in graph and "webui.request.generation" in graph["webui.request"]
    bad = [c for c in cycles(graph) if not any(c <= known for known in KNOWN_CYCLES)]
    assert not bad, "import cycles among webui modules (function-level imports count):\n" + "\n".join(
        _describe(c, graph) for c in bad)


def test_the_cycle_check_sees_function_level_imports(tmp_path):
    pkg = tmp_path / "webui"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "sub" / "__init__.py").write_text("from .c import y\n")
    (pkg / "sub" / "c.py").write_text("from ..d import z\n")
    (pkg / "d.py").write_text("def g():\n    from .sub import c\n")
    graph = import_graph(pkg)
    assert graph["webui.b"] == {"webui.a"}
    assert graph["webui.sub"] == {"webui.sub.c"}
    assert graph["webui.sub.c"] == {"webui.d"}
    assert graph["webui.d"] == {"webui.sub", "webui.sub.c"}
    assert sorted(map(sorted, cycles(graph))) == [["webui.a", "webui.b"], ["webui.d", "webui.sub", "webui.sub.c"]]


# ---- imports point down -----------------------------------------------------------------------

# The layers, lowest first (ARCHITECTURE.md, "Where things live"): a module may import from its
# own layer and the layers below it, never from one above. Every webui module must sit in one.
LAYERS: list[set[str]] = [
    {"webui.errors", "webui.validate", "webui.settings", "webui.samplers_names", "webui.i18n",
     "webui.atomic_files", "webui.configs", "webui.options"},
    {"webui.imaging", "webui.metadata"},
    {"webui.request"},
    {"webui.prompts", "webui.models"},
    {"webui.engine"},
    {"webui.serving"},
    {"webui.api", "webui.ui"},
]
# Upward imports that exist today and are to be removed (importer, imported); none may be added.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def layer_of(module: str) -> int | None:
    """The layer of a module: that of its top-level module or folder under webui."""
    top = ".".join(module.split(".")[:2])
    return next((i for i, members in enumerate(LAYERS) if top in members), None)


def upward_imports(graph: dict[str, set[str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """(modules in no layer, (importer, imported) pairs where the imported one is higher up)."""
    unplaced = sorted(m for m in graph if m != PACKAGE.name and layer_of(m) is None)
    up = sorted((a, b) for a, deps in graph.items() for b in deps
                if a != PACKAGE.name and layer_of(a) is not None and layer_of(b) is not None
                and layer_of(b) > layer_of(a))
    return unplaced, up


def test_imports_point_down_only():
    unplaced, up = upward_imports(import_graph())
    assert not unplaced, f"modules in no layer (add their folder to LAYERS): {', '.join(unplaced)}"
    new = [f"{a} -> {b}" for a, b in up if (a, b) not in KNOWN_UPWARD]
    assert not new, "imports from a higher layer (function-level imports count):\n" + "\n".join(new)
    stale = [f"{a} -> {b}" for a, b in sorted(KNOWN_UPWARD) if (a, b) not in up]
    assert not stale, f"no longer imported, take them off KNOWN_UPWARD: {', '.join(stale)}"


def test_the_layer_check_sees_an_upward_import():
    graph = {"webui.errors": set(), "webui.models.vae": {"webui.errors"},
             "webui.engine.tasks": {"webui.models.vae"},
             "webui.models.faces": {"webui.engine.tasks"}, "webui.extra": set()}
    assert upward_imports(graph) == (["webui.extra"], [("webui.models.faces", "webui.engine.tasks")])


# ---- the request package is pure ---------------------------------------------------------------

def test_importing_the_request_loads_no_engine_or_ui_library():
    code = ("import sys, webui.request, webui.request.controlnet, webui.request.ipadapter, webui.request.face, "
            "webui.request.hires; print(' '.join(m for m in %r if m in sys.modules))" % (HEAVY,))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import webui.request loaded {out.stdout.strip()}"


def test_the_request_package_imports_only_pure_modules():
    graph = import_graph()
    seen, todo = set(), [m for m in graph if m == "webui.request" or m.startswith("webui.request.")]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    outside = {m for m in seen if not m.startswith("webui.request")} - REQUEST_MAY_IMPORT
    assert not outside, f"the request package reaches {', '.join(sorted(outside))}"


# ---- module size ratchet -----------------------------------------------------------------------

def test_modules_stay_small():
    over, grown, stale = [], [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in DATA_FILES:
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        allowed = OVERSIZED.get(rel)
        if allowed is None and lines > MAX_LINES:
            over.append(f"{rel} ({lines} lines)")
        elif allowed is not None and lines > allowed:
            grown.append(f"{rel} ({lines} lines, allowed {allowed})")
        elif allowed is not None and lines <= MAX_LINES:
            stale.append(rel)
    assert not over, f"modules over {MAX_LINES} lines (split them): {', '.join(over)}"
    assert not grown, f"oversized modules may not grow: {', '.join(grown)}"
    assert not stale, f"now under {MAX_LINES} lines, take them off OVERSIZED: {', '.join(stale)}"
    missing = [p for p in (*OVERSIZED, *DATA_FILES) if not (ROOT / p).is_file()]
    assert not missing, f"listed modules that no longer exist: {', '.join(missing)}"


# ---- Service is the front door -----------------------------------------------------------------

# Service's own modules; everything else in webui calls Service's methods.
SERVICE_MODULES = {"webui/serving/service.py", "webui/serving/service_jobs.py", "webui/serving/service_tools.py"}
SERVICE_NAMES = {"service", "svc"}
SERVICE_INSIDES = {"manager", "catalog", "queue", "jobs"}


def reaches_into_service(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, "service.manager") for each access to Service's insides: an attribute manager,
    catalog, queue or jobs of something called `service` or `svc` (a variable, or an attribute
    such as `self.service`)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Attribute) or node.attr not in SERVICE_INSIDES:
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else None
        if name in SERVICE_NAMES:
            found.append((node.lineno, f"{name}.{node.attr}"))
    return sorted(found)


def test_only_service_reaches_its_insides():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in SERVICE_MODULES:
            continue
        bad += [f"{rel}:{line}: {what}" for line, what in reaches_into_service(path.read_text(encoding="utf-8"), rel)]
    assert not bad, "call a Service method instead of reaching into it (ARCHITECTURE.md):\n" + "\n".join(bad)
    missing = [p for p in SERVICE_MODULES if not (ROOT / p).is_file()]
    assert not missing, f"listed Service modules that no longer exist: {', '.join(missing)}"


def test_the_front_door_check_sees_each_kind_of_access():
    code = ("def f(service, svc, ui):\n"
            "    service.manager.active\n    svc.catalog.refresh()\n    ui.service.queue.call(g, j)\n"
            "    x = service.jobs\n    service.settings.auth\n    other.manager\n    service.history(o)\n")
    assert reaches_into_service(code) == [(2, "service.manager"), (3, "svc.catalog"), (4, "service.queue"),
                                          (5, "service.jobs")]


# ---- the engine's one pass knows no feature ----------------------------------------------------

FEATURE_NAMES = re.compile(r"lora|lyco|controlnet|control_net|ip.?adapter|hires|hr_|face", re.IGNORECASE)


def test_denoise_module_names_no_feature():
    """Features plug in as extensions: the pass itself (code, comments and docstrings) never says
    which ones exist, so adding or deleting a feature never touches it."""
    text = (PACKAGE / "engine" / "denoise.py").read_text()
    found = sorted({m.group(0).lower() for m in FEATURE_NAMES.finditer(text)})
    assert not found, f"engine/denoise.py names features: {found}"


def test_a_feature_is_one_module_and_one_line():
    """The extension list is built in one place; the engine's other modules never import a
    feature's module (stages and the runner reach features only through their hooks). (The
    front ends list a feature's model files through its module; that is not the engine.)"""
    graph = import_graph()
    features = {m for m in module_files() if m.startswith("webui.engine.extensions.")
                and m.rsplit(".", 1)[1] not in ("base", "progress")}
    allowed = {"webui.engine.extensions", "webui.engine.manager"}  # the list; the caches the manager owns
    users = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                   if b in features and a.startswith("webui.engine.") and a not in allowed
                   and not a.startswith("webui.engine.extensions"))
    assert not users, "modules that reach a feature's module directly:\n" + "\n".join(users)
