import os
import time

from tfjoint.pipeline.runners import _component_progress


def test_progress_reports_components_in_start_order(tmp_path, capsys):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "A", "out", "1"))  # an earlier run: not reported
    with _component_progress(root, ("A", "B", "C")):
        now = time.time()
        for name, started in (("C", now - 3), ("B", now - 2), ("A", now - 1)):
            path = os.path.join(root, name, "out", "2")
            os.makedirs(path)
            os.utime(path, (started, started))
        time.sleep(1.2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[tfjoint]")]
    assert lines[0] == "[tfjoint] C ..." and lines[1] == "[tfjoint] C done in 1 s"
    assert lines[2] == "[tfjoint] B ..." and lines[3] == "[tfjoint] B done in 1 s"
    assert lines[4] == "[tfjoint] A ..." and lines[5].startswith("[tfjoint] A done in")
