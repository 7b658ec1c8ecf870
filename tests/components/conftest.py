"""Fixtures for the component tests: the taxi sample as ExampleGen writes it."""

import pytest

from support.sample_examples import examples_of_sample


@pytest.fixture(scope='session')
def taxi_examples(tmp_path_factory):
    """The taxi sample through ExampleGen: an Examples artifact with train (2/3) and eval splits."""
    return examples_of_sample(tmp_path_factory.mktemp('taxi-examples'))
