"""What setup.py installs is the whole product: every folder of code is in the package.

An editable install finds any folder on the path; a wheel, or the pipeline image's install, has only
what setup.py lists. A folder that is not a package is left out of both there, and its first import
fails in the image or a user's environment, not here.
"""

import pathlib
import runpy
from unittest import mock

import pytest

pytestmark = pytest.mark.unit

REPO = pathlib.Path(__file__).resolve().parents[1]
NOT_PRODUCT = {'tests', 'benchmarks', 'build', 'docs', 'workspace', 'kfp'}


def _setup_arguments() -> dict:
    with mock.patch('setuptools.setup') as setup:
        runpy.run_path(str(REPO / 'setup.py'), run_name='__main__')
    return setup.call_args.kwargs


def test_every_folder_of_code_is_an_installed_package():
    packages = set(_setup_arguments()['packages'])
    folders = {str(p.parent.relative_to(REPO)).replace('/', '.') for p in REPO.rglob('*.py')
               if p.parent != REPO and p.relative_to(REPO).parts[0] not in NOT_PRODUCT
               and not p.relative_to(REPO).parts[0].startswith('.')}
    missing = sorted(folders - packages)
    assert not missing, f'not installed by setup.py (a folder of code without __init__.py?): {missing}'


def test_templates_and_policies_ship_with_their_packages():
    data = _setup_arguments()['package_data']
    for package, patterns in data.items():
        for pattern in patterns:
            assert list((REPO / package.replace('.', '/')).glob(pattern)), f'{package}: nothing matches {pattern}'
    assert 'templates/*.html' in data.get('reports', [])


def test_the_console_script_leaves_pkg_resources_nothing_to_resolve():
    # A `setup.py develop` script sets __requires__ in __main__; the first import of pkg_resources
    # (TensorFlow's import makes one) then resolves every requirement of the project: ~2 s a start.
    import sys
    script = pathlib.Path(sys.executable).parent / 'taxi-pipeline'
    seen = {}

    def console_main():
        seen['requires'] = sys._getframe(1).f_globals.get('__requires__')
        seen['name'] = sys._getframe(1).f_globals.get('__name__')
        return 0

    with mock.patch('cli.main.console_main', console_main), pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name='__main__')
    assert exit_.value.code == 0 and seen['name'] == '__main__'
    assert seen['requires'] is None, f'{script} sets __requires__ = {seen["requires"]!r}: reinstall with `make venv`'
