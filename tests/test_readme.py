"""The README's library example runs and shows what it claims."""

import re
from pathlib import Path


def test_readme_library_example(tmp_path, monkeypatch, capsys):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"## Library\n\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "agreement 1.0" in out
    assert "deviating spikes 0" in out
    assert (tmp_path / "digits_snn.npz").exists()
