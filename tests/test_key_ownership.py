"""One owner per Redis record: only the record's module in core/state/ names its key."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "core" / "state"
BRIDGE = ("core", "webhook", "workers", "subscriptions", "cli")
KEY_BUILDING_NAMES = {"PREFIX", "tenant_key"}


def _render(node: ast.expr) -> str | None:
    """A key template from a literal: `{}` where a value goes in; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue) and _is_prefix(value.value):
                parts.append("pb:")
            else:
                parts.append("{}")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and _is_prefix(node.left):
        rest = _render(node.right)
        return None if rest is None else "pb:" + rest
    return None


def _is_prefix(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "PREFIX"


def key_templates(path: Path) -> set[str]:
    """Every key shape a module builds, with `PREFIX` and `tenant_key` spelled out."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "tenant_key" and len(node.args) == 2:
                suffix = _render(node.args[1])
                if suffix is not None:
                    found.add("pb:tenant:{}:" + suffix)
        elif isinstance(node, ast.BinOp | ast.JoinedStr):
            template = _render(node)
            if template is not None and template.startswith("pb:"):
                found.add(template)
    return found


def names_keys(path: Path) -> bool:
    """True when a module builds a key itself: a `pb:` literal, PREFIX or tenant_key."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith("pb:"):
                return True
        elif isinstance(node, ast.Name | ast.alias) and _name_of(node) in KEY_BUILDING_NAMES:
            return True
    return False


def _name_of(node: ast.Name | ast.alias) -> str:
    return node.id if isinstance(node, ast.Name) else node.name


def record_modules() -> list[Path]:
    return sorted(p for p in STATE.glob("*.py") if not p.name.startswith("_"))


def test_only_the_state_layer_builds_redis_keys() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in BRIDGE
        for path in (ROOT / package).rglob("*.py")
        if STATE not in path.parents and names_keys(path)
    ]
    assert offenders == []


def test_every_record_module_owns_keys() -> None:
    assert {p.stem: bool(key_templates(p)) for p in record_modules()} == {
        p.stem: True for p in record_modules()
    }


def test_each_key_shape_has_one_owning_module() -> None:
    owners: dict[str, list[str]] = {}
    for path in record_modules():
        for template in key_templates(path):
            owners.setdefault(template, []).append(path.stem)
    assert {t: m for t, m in owners.items() if len(m) > 1} == {}


def test_the_checker_reads_every_way_a_key_is_built(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "A = PREFIX + 'intake'\n"
        "def b(t): return tenant_key(t, f'events:{t}')\n"
        "def c(i): return f'{PREFIX}sub:{i}'\n"
    )
    assert key_templates(sample) == {"pb:intake", "pb:tenant:{}:events:{}", "pb:sub:{}"}
    assert names_keys(sample)


def test_the_checker_sees_a_key_named_outside_the_state_layer(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("redis.hgetall('pb:tenant:contoso:links')\n")
    assert names_keys(sample)
