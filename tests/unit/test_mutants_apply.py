"""Every mutant still applies: each edit's text occurs exactly once in its file, and the tests it names exist.
A test copied next to a mutated one (or an edit elsewhere) otherwise breaks the mutant only when CI reaches its
stage, after most of the run."""

from pathlib import Path

import pytest

from tests.mutations.mutants import MUTANTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_each_edit_matches_exactly_once_and_its_tests_exist(mutant):
    for path, old, _ in mutant.edits:
        assert (ROOT / path).read_text().count(old) == 1, f"{mutant.name}: {path} does not hold its text once"
    for test in mutant.tests:
        file, _, name = test.partition("::")
        assert (ROOT / file).exists(), f"{mutant.name}: no {file}"
        if name:
            assert f"def {name.split('[')[0]}(" in (ROOT / file).read_text(), f"{mutant.name}: no {test}"
    if mutant.pythonpath:
        assert (ROOT / mutant.pythonpath).is_dir()
