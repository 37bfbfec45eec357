"""The examples in the modules' docstrings are known values: each runs, as written."""

import doctest
import importlib

import pytest

MODULES = ("augmentation", "completeness", "data_cache", "epochs", "evaluation", "preprocessing", "shards", "spectrum",
           "survey_files", "training", "transit_search")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_give_the_values_they_show(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
