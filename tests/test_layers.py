"""The layer rule of docs/architecture.md: imports point down only, packages of one layer do not import each other,
and no real stage imports the demo. The table the test enforces is read from docs/architecture.md itself."""
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\|\s*(\d+)\s*\|([^|]*)\|")


def layer_table(doc: str) -> dict[str, int]:
    """package -> layer number, from the markdown rows `| N | `pkg`, `pkg` | ... |` under '## Layers'."""
    section = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            for pkg in re.findall(r"`([\w.]+)`", m.group(2)):
                table[pkg] = int(m.group(1))
    return table


def package_of(module: str, table: dict[str, int]) -> str | None:
    """The longest package of the table that module is (in)."""
    hits = [p for p in table if module == p or module.startswith(p + ".")]
    return max(hits, key=len) if hits else None


def imported(source: str, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a module's source, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative: resolve against the importing module's package
                base = module.rsplit(".", node.level)[0]
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            # `from pkg import sub` may name a submodule: count it as pkg.sub
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names]
    return out


def violations(modules: dict[str, str], table: dict[str, int]) -> list[str]:
    """'file:line: module imports name (layer a -> b)' for every import that breaks the rule."""
    bad = []
    for module, source in modules.items():
        own = package_of(module, table)
        if own is None:
            continue
        for line, name in imported(source, module):
            other = package_of(name, table)
            if other is None or other == own:
                continue
            if table[other] > table[own] or (table[other] == table[own]):
                why = "upward" if table[other] > table[own] else "sideways"
                bad.append(f"{module.replace('.', '/')}.py:{line}: imports {name} ({why}: layer {table[own]} "
                           f"{own} -> layer {table[other]} {other})")
    return bad


def project_modules() -> dict[str, str]:
    out = {}
    for top in ("curate", "trainers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path.read_text(encoding="utf-8")
    return out


def test_the_table_covers_every_package():
    table = layer_table((ROOT / "docs" / "architecture.md").read_text())
    assert table["curate.core"] == 1 and table["curate.cli"] == max(table.values())
    packages = {f"curate.{p.name}" for p in (ROOT / "curate").iterdir() if (p / "__init__.py").exists()}
    assert packages | {"trainers"} <= set(table), packages | {"trainers"} - set(table)


def test_imports_point_down_only():
    table = layer_table((ROOT / "docs" / "architecture.md").read_text())
    assert violations(project_modules(), table) == []


def test_an_upward_or_sideways_import_is_named():
    table = layer_table((ROOT / "docs" / "architecture.md").read_text())
    fake = {
        "curate.core.fake": "import os\n\ndef f():\n    from curate.demo.loop import run_loop\n",
        "curate.crawl.fake": "from curate.clean import teacher\nfrom curate.core import manifest\n",
        "curate.clean.fake": "from ..demo import spec\n",
        "trainers.fake": "from curate.formats import ava\nfrom curate.clean.filter import KeepRules\n",
    }
    bad = violations(fake, table)
    assert bad == [
        f"curate/core/fake.py:4: imports curate.demo.loop.run_loop (upward: layer 1 curate.core -> layer "
        f"{table['curate.demo']} curate.demo)",
        f"curate/crawl/fake.py:1: imports curate.clean.teacher (sideways: layer {table['curate.crawl']} curate.crawl "
        f"-> layer {table['curate.clean']} curate.clean)",
        f"curate/clean/fake.py:1: imports curate.demo.spec (upward: layer {table['curate.clean']} curate.clean -> "
        f"layer {table['curate.demo']} curate.demo)",
        f"trainers/fake.py:2: imports curate.clean.filter.KeepRules (upward: layer {table['trainers']} trainers -> "
        f"layer {table['curate.clean']} curate.clean)",
    ]


def test_help_imports_neither_torch_nor_pandas():
    code = ("import sys\nfrom curate.cli import cli\n"
            "for args in (['--help'], ['train', '--help'], ['filter', '--help'], ['gym', 'import', '--help'],\n"
            "             ['import', '--help'], ['import', 'activitynet', '--help'], ['import', 'ava', '--help'],\n"
            "             ['import', 'sthv2', '--help'], ['import', 'ucf101', '--help']):\n"
            "    try:\n        cli(args)\n    except SystemExit:\n        pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'pandas', 'pyarrow') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"
