"""The README's runnable example of a user's own component runs as written."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _block(after_heading: str) -> str:
    text = README.read_text()
    section = text[text.index(after_heading):]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_your_own_component_example_runs(capsys):
    code = _block("### Your own component")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert capsys.readouterr().out.strip() == "['like', 'rating', 'watch']"
    from tfjoint import catalog

    assert catalog.get("my_towers", slot="task_architecture").cls is namespace["MyTowers"]
    model = namespace["model"]
    assert type(model.task_architecture).__name__ == "MyTowers"
    assert model.task_architecture.units == [16]


def test_a_component_is_found_by_its_import_path():
    from tfjoint.joint import resolve_component
    from tfjoint.layers.multi_task import SharedBottom

    assert resolve_component("task_architecture", "tfjoint.layers.multi_task.shared_bottom:SharedBottom") is SharedBottom
    assert resolve_component("task_architecture", "tfjoint.layers.multi_task.shared_bottom.SharedBottom") is SharedBottom
    for bad in ("tfjoint.nowhere:Thing", "tfjoint.layers.multi_task:NoSuchLayer", "tfjoint.features:TaskSpec"):
        try:
            resolve_component("task_architecture", bad)
        except ValueError as e:
            assert bad in str(e)
        else:
            raise AssertionError(f"{bad} was accepted")
