"""The import rules, as docs/architecture.md writes them down, hold for every module.

The rules are read from the table under "## Import rules" in docs/architecture.md: that table is
the one place they are written, and this test fails on any import it forbids, lazy imports inside
functions included. It also fails on an import of a CLI module from outside `cli`, on an import of
TFX's `v1` API, and on any cycle between modules.
"""

from __future__ import annotations

import ast
import pathlib
import re
from typing import Dict, List, Optional, Set, Tuple

import pytest

pytestmark = pytest.mark.unit


REPO = pathlib.Path(__file__).resolve().parents[1]
RULES_DOC = REPO / 'docs' / 'architecture.md'
# Folders that are not the product: they may import anything.
NOT_PACKAGES = {'tests', 'benchmarks', 'build', 'docs', 'workspace', 'kfp', 'setup'}


def read_rules(doc: pathlib.Path = RULES_DOC) -> Dict[str, Set[str]]:
    """package -> the project packages it may import, from the doc's "Import rules" table
    (`| package | may import |`, packages in backticks, "everything" or "nothing")."""
    section = re.search(r'^## Import rules\n(.*?)(?=^## |\Z)', doc.read_text(), re.S | re.M)
    assert section, f'{doc} has no "## Import rules" section'
    rules = {}
    for line in section.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')] if line.startswith('|') else []
        if len(cells) < 2 or not cells[0].startswith('`'):
            continue
        package = cells[0].strip('`').rstrip('/')
        allowed = cells[1]
        rules[package] = {'*'} if allowed.startswith('everything') else set(re.findall(r'`([\w]+)/?`', allowed))
    assert rules, f'no rules found in the table of {doc}'
    return rules


def modules(root: pathlib.Path) -> Dict[str, pathlib.Path]:
    """Dotted module name -> file, for every module of the product under `root`."""
    found = {}
    for path in sorted(root.rglob('*.py')):
        parts = path.relative_to(root).with_suffix('').parts
        if parts[0] in NOT_PACKAGES or parts[0].startswith('.') or 'site-packages' in path.parts:
            continue
        if len(parts) > 1 and not (root / parts[0] / '__init__.py').exists():
            continue
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        found[name] = path
    return found


def imports(path: pathlib.Path, module: str, known: Dict[str, pathlib.Path]) -> List[Tuple[str, int]]:
    """(imported project module, line) for every import statement in a file, wherever it stands."""
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - (node.level - 1)] if package else []
                base = '.'.join([*anchor, *([base] if base else [])])
            # `from pkg import name`: the submodule pkg.name where there is one, else pkg itself.
            names = [f'{base}.{a.name}' if f'{base}.{a.name}' in known else base for a in node.names]
        else:
            continue
        for name in names:
            target = _project_module(name, known)
            if target:
                found.append((target, node.lineno))
    return found


def _project_module(name: str, known: Dict[str, pathlib.Path]) -> Optional[str]:
    parts = name.split('.')
    for n in range(len(parts), 0, -1):
        candidate = '.'.join(parts[:n])
        if candidate in known:
            return candidate
    return None


def is_cli(module: str) -> bool:
    return module.split('.')[0] == 'cli' or module.split('.')[-1] == 'commands'


def imports_tfx(path: pathlib.Path) -> bool:
    """Whether a module imports TFX at import time (its top-level statements)."""
    for node in ast.parse(path.read_text()).body:
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ''] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(n == 'tfx' or n.startswith('tfx.') for n in names):
            return True
    return False


def tfx_v1_lines(path: pathlib.Path) -> List[int]:
    """Lines importing TFX's `v1` API wherever they stand: `import tfx.v1`, `from tfx import v1`, `from tfx.v1...`."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [f'{node.module}.{a.name}' for a in node.names] + [node.module or '']
        else:
            continue
        if any(n == 'tfx.v1' or n.startswith('tfx.v1.') for n in names):
            lines.append(node.lineno)
    return lines


def plain_logic_only(doc: pathlib.Path = RULES_DOC) -> Set[str]:
    """The packages whose row allows `components` "(plain-logic modules only...)"."""
    return set(re.findall(r'^\| `(\w+)` \|[^\n]*`components` \(plain-logic modules only', doc.read_text(), re.M))


def violations(root: pathlib.Path, rules: Dict[str, Set[str]],
               plain_only: Set[str] = frozenset({"monitoring"})) -> List[str]:
    known = modules(root)
    graph: Dict[str, Set[str]] = {m: set() for m in known}
    found = []
    for module, path in known.items():
        package = module.split('.')[0]
        allowed = rules.get(package)
        where = f'{path.relative_to(root)}'
        if allowed is None:
            found.append(f'{where}: package {package!r} is in no row of the import rules')
            allowed = set()
        found.extend(f'{where}:{line}: imports tfx.v1 (TFX\'s own modules instead)' for line in tfx_v1_lines(path))
        for target, line in imports(path, module, known):
            graph[module].add(target)
            target_package = target.split('.')[0]
            if target_package != package and '*' not in allowed and target_package not in allowed:
                found.append(f'{where}:{line}: {package} may not import {target_package} ({target})')
            if is_cli(target) and package != 'cli':
                found.append(f'{where}:{line}: only cli imports a CLI module ({target})')
            if package in plain_only and target_package == 'components' and imports_tfx(known[target]):
                found.append(f'{where}:{line}: {package} takes plain logic from components, not a TFX '
                             f'component or executor ({target})')
    found.extend(f'import cycle: {" -> ".join(cycle)}' for cycle in cycles(graph))
    return list(dict.fromkeys(found))  # one line per import, however many names it takes


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle per strongly connected component of more than one module (or a module importing itself)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component) + [sorted(component)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_keeps_the_import_rules():
    found = violations(REPO, read_rules(), plain_logic_only())
    assert not found, 'import rules broken (docs/architecture.md, "Import rules"):\n' + '\n'.join(found)


def _plant(root: pathlib.Path, files: Dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        init = path.parent / '__init__.py'
        if path.parent != root and not init.exists():
            init.write_text('')


@pytest.mark.parametrize('planted, expected', [
    ({'serving/server.py': 'from pipeline import config\n'}, 'serving may not import pipeline'),
    ({'foundation/paths.py': 'def f():\n    import monitoring.monitor\n'}, 'foundation may not import monitoring'),
    ({'taxi_model/training.py': 'from components.trainer import X\n'}, 'taxi_model may not import components'),
    ({'scheduler/service.py': 'from monitoring import commands\n'}, 'only cli imports a CLI module'),
    ({'pipeline/a.py': 'from pipeline import b\n', 'pipeline/b.py': 'from . import a\n'}, 'import cycle'),
    ({'monitoring/monitor.py': 'from components import trainer\n',
      'components/trainer.py': 'from tfx import v1\n'}, 'not a TFX component or executor'),
    ({'newpackage/x.py': 'import os\n'}, 'in no row of the import rules'),
    ({'pipeline/dag.py': 'def f():\n    from tfx import v1 as tfx\n'}, 'imports tfx.v1'),
    ({'components/c.py': 'from tfx.v1.dsl import Pipeline\n'}, 'imports tfx.v1'),
])
def test_a_planted_violation_is_found(tmp_path, planted, expected):
    rules = read_rules()
    _plant(tmp_path, {'pipeline/config.py': '', 'monitoring/commands.py': '', 'monitoring/monitor.py': '',
                      'components/trainer.py': '', **planted})
    found = violations(tmp_path, rules)
    assert any(expected in line for line in found), found


def test_allowed_imports_pass(tmp_path):
    _plant(tmp_path, {'foundation/workspace.py': 'import os\n', 'serving/server.py': 'from foundation import workspace\n',
                      'cli/main.py': 'from serving import server\nfrom monitoring import commands\n',
                      'monitoring/commands.py': 'from monitoring import monitor\n', 'monitoring/monitor.py': '',
                      'components/drift.py': 'import numpy\n', 'monitoring/skew.py': 'from components import drift\n'})
    assert violations(tmp_path, read_rules()) == []


def test_the_plain_logic_rule_is_read_from_the_table():
    assert {'monitoring', 'release'} <= plain_logic_only()
