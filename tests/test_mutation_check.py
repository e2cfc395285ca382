"""The mutation list of tools/mutation_check.py still matches the code it mutates."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "tools" / "mutation_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_mutation_snippet_occurs_once_and_its_tests_exist():
    module = _module()
    assert module.check_snippets() == []
    assert len(module.MUTATIONS) >= 12


def test_a_snippet_that_no_longer_matches_is_reported(tmp_path):
    module = _module()
    (tmp_path / "m.py").write_text("x = 1\n")
    bad = module.Mutation("gone", "m.py", "x = 2", "x = 3", ("t.py",), "why")
    problems = module.check_snippets((bad,), root=tmp_path)
    assert any("occurs 0 times" in p for p in problems) and any("no test file" in p for p in problems)
