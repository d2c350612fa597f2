"""The layering of DESIGN.md, enforced by parsing imports.

A layer may import the standard library, its declared third-party libraries and the raftlog
layers listed for it below; anything else reaching up or sideways fails this test. The
sans-io Raft core additionally may not import anything that reads a clock, the OS, the
network or global randomness, and may not call module-level ``random`` functions.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE = {"raftlog", "raftlog.types", "raftlog.config", "raftlog.errors"}
RECORD_BATCH = {"raftlog.storage.record_batch", "raftlog.storage.records"}

# layer folder -> raftlog modules (prefixes) it may import
ALLOWED: dict[str, set[str]] = {
    "raftlog/raft": BASE | {"raftlog.raft"},
    "raftlog/storage": BASE | {"raftlog.storage"},
    "raftlog/wire": BASE | {"raftlog.wire", "raftlog.raft"} | RECORD_BATCH,
    # the metadata journal writes through the storage layer's file seam (power loss tests)
    "raftlog/metadata": BASE | {"raftlog.metadata", "raftlog.wire", "raftlog.storage.files"},
    "raftlog/runtime": BASE
    | {"raftlog.runtime", "raftlog.raft", "raftlog.storage", "raftlog.wire", "raftlog.metadata"},
    "raftlog/broker": BASE
    | {
        "raftlog.broker",
        "raftlog.runtime",
        "raftlog.raft",
        "raftlog.storage",
        "raftlog.wire",
        "raftlog.metadata",
    },
    "raftlog/client": BASE | {"raftlog.client", "raftlog.wire"} | RECORD_BATCH,
}
# third-party libraries per layer (everything not listed is forbidden there)
THIRD_PARTY: dict[str, set[str]] = {
    "raftlog/raft": set(),
    "raftlog/storage": {"crc32c", "lz4", "zstandard"},  # records.py: batch compression
    "raftlog/wire": {"cbor2", "crc32c"},
    "raftlog/metadata": {"pysyncobj", "trio", "cbor2", "crc32c"},
    "raftlog/runtime": {"trio", "cbor2", "crc32c"},
    "raftlog/broker": {"trio", "cbor2", "crc32c"},
    "raftlog/client": {"trio", "cbor2", "crc32c", "zstandard", "lz4"},
}
RAFT_FORBIDDEN_STDLIB = {
    "time",
    "os",
    "socket",
    "select",
    "selectors",
    "threading",
    "asyncio",
    "datetime",
    "secrets",
    "uuid",
    "subprocess",
    "io",
    "pathlib",
}


def imports_of(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """Absolute names imported by a module (relative imports resolved against ``module``)."""
    out: list[tuple[int, str]] = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # "from raftlog import storage" imports raftlog.storage
            if name == "raftlog":
                out.extend((node.lineno, f"raftlog.{a.name}") for a in node.names)
    return out


def _allowed(name: str, prefixes: set[str]) -> bool:
    # the bare package "raftlog" allows only itself, never everything below it
    return any(name == p or (p != "raftlog" and name.startswith(p + ".")) for p in prefixes)


def violations_in(source: str, path: str) -> list[str]:
    """Every layering violation of one file, given its repository-relative path."""
    layer = next((layer for layer in ALLOWED if path.startswith(layer + "/")), None)
    module = path.removesuffix(".py").replace("/", ".")
    if path.startswith("cli/"):
        module = "raftlog." + module
    tree = ast.parse(source, path)
    found: list[str] = []
    for lineno, name in imports_of(tree, module):
        top = name.split(".")[0]
        where = f"{path}:{lineno} imports {name}"
        if top == "typer" and not path.startswith("cli/"):
            found.append(f"{where}: only cli/ may import typer")
        if top == "pysyncobj" and path != "raftlog/metadata/quorum.py":
            found.append(f"{where}: only raftlog/metadata/quorum.py may import pysyncobj")
        if layer is None:
            continue
        if top in ("raftlog", "cli", "scenarios"):
            if top != "raftlog" or not _allowed(name, ALLOWED[layer]):
                found.append(f"{where}: {layer} may not reach this layer")
        elif top in sys.stdlib_module_names:
            if layer == "raftlog/raft" and top in RAFT_FORBIDDEN_STDLIB:
                found.append(f"{where}: the Raft core is sans-io (no clock, OS or network)")
        elif top != "__future__" and top not in THIRD_PARTY[layer]:
            found.append(f"{where}: {layer} may not depend on {top}")
    if layer == "raftlog/raft":
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "random"
                and node.func.attr != "Random"
            ):
                found.append(f"{path}:{node.lineno}: global random.{node.func.attr}() in core")
    return found


def project_files() -> list[Path]:
    files = []
    for top in ("raftlog", "cli", "scenarios"):
        files.extend(sorted((ROOT / top).rglob("*.py")))
    return files


def test_every_layer_keeps_its_imports() -> None:
    files = project_files()
    assert len(files) > 10, "the layering test found no source to check"
    problems = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        problems.extend(violations_in(f.read_text(), rel))
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_the_checker_catches_violations() -> None:
    cases = {
        "raftlog/raft/core.py": "import time\n",
        "raftlog/raft/node.py": "from raftlog.storage import log\n",
        "raftlog/raft/x.py": "import random\nrandom.random()\n",
        "raftlog/storage/log.py": "import trio\n",
        "raftlog/client/producer.py": "from raftlog.broker import handlers\n",
        "raftlog/client/consumer.py": "from raftlog.storage.log import PartitionLog\n",
        "raftlog/metadata/model.py": "import pysyncobj\n",
        "raftlog/broker/server.py": "import typer\n",
        "raftlog/wire/frames.py": "from ..runtime import transport\n",
    }
    for path, source in cases.items():
        assert violations_in(source, path), f"not caught: {path}: {source!r}"
    ok = {
        "raftlog/raft/core.py": "import random\nrng = random.Random(1)\n",
        "raftlog/client/producer.py": "from raftlog.storage.record_batch import encode_batch\n",
        "raftlog/metadata/quorum.py": "import pysyncobj\n",
        "cli/main.py": "import typer\nfrom raftlog.broker import server\n",
    }
    for path, source in ok.items():
        assert not violations_in(source, path), f"false alarm: {path}"


def test_nothing_is_defined_below_a_main_block() -> None:
    # ``python -m module`` runs the block when it is reached: a function defined below it
    # does not exist yet (bench workers died with NameError that way, which no import
    # from another module shows)
    late = []
    for folder in ("raftlog", "cli", "scenarios", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            seen_main = False
            for node in tree.body:
                if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                    seen_main = True
                elif seen_main and isinstance(node, ast.FunctionDef | ast.ClassDef):
                    late.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not late, late
