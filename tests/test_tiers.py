"""The tier guard: a test with no tier, two tiers, or a pipeline run outside e2e stops the session."""

import dataclasses
from typing import List

import pytest

import conftest

pytestmark = pytest.mark.unit


@dataclasses.dataclass
class _Item:
    nodeid: str
    marks: List[str]
    fixturenames: List[str] = dataclasses.field(default_factory=list)

    def iter_markers(self):
        return iter(pytest.Mark(name, (), {}) for name in self.marks)


def test_tests_in_one_tier_each_pass():
    conftest.pytest_collection_modifyitems(None, [_Item('a', ['unit', 'parametrize']),
                                                  _Item('b', ['e2e'], ['first_run', 'tmp_path'])])


@pytest.mark.parametrize('item, says', [
    (_Item('tests/x/test_new.py::test_it', []), 'no tier'),
    (_Item('tests/x/test_two.py::test_it', ['unit', 'e2e']), 'tiers e2e, unit'),
    (_Item('tests/x/test_slow.py::test_it', ['unit'], ['versions']), 'runs the pipeline (fixture versions)'),
])
def test_a_test_outside_the_tiers_stops_the_session(item, says):
    with pytest.raises(pytest.UsageError) as raised:
        conftest.pytest_collection_modifyitems(None, [_Item('fine', ['unit']), item])
    assert item.nodeid in str(raised.value) and says in str(raised.value)
    assert 'fine' not in str(raised.value)
