"""The core stays sans-I/O, and the public API is what __all__ says."""

from __future__ import annotations

import ast
import pathlib

import pktdemux

PACKAGE = pathlib.Path(pktdemux.__file__).parent

#: Modules that do I/O on purpose: reading files, the terminal, the real kernel.
ADAPTERS = {
    "__main__", "cli", "capture", "replay", "report", "render", "hostfile", "jsonl", "pcapng_out",
    "output", "repl", "shell", "golden", "golden_render", "pytest_plugin", "record", "oracle", "scenario",
    "cli_golden", "cli_host", "cli_shell", "hostimport", "host", "network", "apps", "explain", "ss",
}

#: Imports that would put a clock, files, sockets, processes, global randomness
#: or Scapy's dissectors into the core.
FORBIDDEN = {"scapy", "socket", "time", "os", "subprocess", "select", "logging", "datetime",
             "threading", "asyncio", "sys", "io", "pathlib", "shutil", "tempfile"}


def core_modules() -> list[pathlib.Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py"))
            if p.relative_to(PACKAGE).parts[0].removesuffix(".py") not in ADAPTERS]


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_modules_do_no_io() -> None:
    """No core module imports a clock, file, socket, process, global RNG or Scapy, nor prints."""
    offenders = {}
    for path in core_modules():
        tree = ast.parse(path.read_text(), str(path))
        bad = imported_roots(tree) & FORBIDDEN
        prints = [n.lineno for n in ast.walk(tree)
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in {"print", "open", "input"}]
        # random.Random(seed) instances are fine; module-level random.* draws are global state.
        global_draws = [n.lineno for n in ast.walk(tree)
                        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                        and n.value.id == "random" and n.attr != "Random"]
        prints += global_draws
        if bad or prints:
            offenders[path.name] = (sorted(bad), prints)
    assert core_modules(), "no core modules found"
    assert offenders == {}


def test_library_code_never_imports_scapy_all() -> None:
    """Specific Scapy modules only: `scapy.all` loads every layer and the routing table."""
    users = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == "scapy.all" or n.startswith("scapy.all.") for n in names):
                users.append(path.name)
    assert users == []


def test_dunder_all_is_sorted_and_complete() -> None:
    public = {name for name in vars(pktdemux) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in public if type(getattr(pktdemux, name)).__name__ == "module"}
    assert list(pktdemux.__all__) == sorted(pktdemux.__all__)
    assert set(pktdemux.__all__) - {"__version__"} == public - modules
