"""The import arrows of ARCHITECTURE.md: imports point down only."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "pallet"

# package -> the pallet packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "oci": {"errors"},
    "runtime": {"oci", "errors"},
    "distribution.server": {"oci", "errors"},
    "image": {"oci", "errors"},
    "store": {"image", "oci", "errors"},
    "distribution.client": {"image", "oci", "errors"},
    "network": {"oci", "errors"},
    "build": {"image", "store", "runtime", "oci", "errors"},
    "engine": {"build", "network", "store", "runtime", "image", "distribution.client", "oci", "errors"},
    "api": {"engine", "build", "network", "store", "runtime", "image", "distribution", "oci", "errors", "api"},
    "cli": {"api", "engine", "build", "network", "store", "runtime", "image", "distribution", "oci", "errors"},
}


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pallet" or len(parts) < 2:
        return None
    if parts[1] == "distribution" and len(parts) > 2:
        return f"distribution.{parts[2]}"
    return parts[1]


def _allowed(src_pkg: str, dst_pkg: str) -> bool:
    if dst_pkg == src_pkg or dst_pkg == "__init__":
        return True
    allowed = ALLOWED.get(src_pkg, set())
    return dst_pkg in allowed or dst_pkg.split(".")[0] in allowed


def test_imports_point_down() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts)
        src_pkg = _package_of(module)
        if src_pkg is None or src_pkg in ("__main__",):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                dst = _package_of(n)
                if dst and not _allowed(src_pkg, dst):
                    bad.append(f"{module} imports {n}")
    assert not bad, "imports pointing up:\n" + "\n".join(bad)
