"""The README's library example runs as written (docs that match the code)."""

import pathlib
import re

import pytest


@pytest.mark.slow
def test_readme_example_runs(capsys):
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    code = re.search(r"## Example\n\n```python\n(.*?)```", readme, re.S).group(1)
    assert len(code.strip().splitlines()) <= 15
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "The stop rule was met." in out
    slope = float(out.split("η^")[1].split()[0])
    assert abs(slope - 1) < 0.1
