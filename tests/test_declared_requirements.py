"""setup.py declares every third-party package the product's code imports.

An import of an undeclared package works here only because something else happened to install it;
in the pipeline image or a user's environment it fails at the first task that reaches it.
"""

import ast
import importlib.metadata
import pathlib
import re
import sys

import pytest

pytestmark = pytest.mark.unit


REPO = pathlib.Path(__file__).resolve().parents[1]
NOT_PRODUCT = {'tests', 'benchmarks', 'build', 'docs', 'workspace', '.venv'}
# Namespaces several distributions share: the module names the distribution.
NAMESPACED = {'google.protobuf': 'protobuf'}


def _normal(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def declared() -> set:
    tree = ast.parse((REPO / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == 'install_requires':
            return {_normal(re.split(r'[<>=!~;\[ ]', ast.literal_eval(e))[0]) for e in node.value.elts}
    raise AssertionError('setup.py has no install_requires')


def imported() -> dict:
    """Top-level third-party module -> first file importing it, over the product's code."""
    product = {p.name for p in REPO.iterdir() if p.is_dir() and any(p.glob('*.py'))} | {'setup'}
    found = {}
    for path in sorted(REPO.rglob('*.py')):
        rel = path.relative_to(REPO)
        if rel.parts[0] in NOT_PRODUCT or rel.parts[0].startswith('.') or rel.name == 'setup.py':
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            for name in names:
                top = name.split('.')[0]
                if top in product or top in sys.stdlib_module_names or top == '__future__':
                    continue
                key = next((ns for ns in NAMESPACED if name == ns or name.startswith(ns + '.')), top)
                found.setdefault(key, str(rel))
    return found


def test_every_imported_package_is_declared():
    distributions = importlib.metadata.packages_distributions()
    wanted = declared()
    missing = []
    for module, where in sorted(imported().items()):
        candidates = [NAMESPACED[module]] if module in NAMESPACED else distributions.get(module, [])
        assert candidates, f'{module} (imported by {where}) is not installed at all'
        if not any(_normal(c) in wanted for c in candidates):
            missing.append(f'{module} ({" or ".join(candidates)}), imported by {where}')
    assert not missing, 'setup.py install_requires lacks:\n' + '\n'.join(missing)
