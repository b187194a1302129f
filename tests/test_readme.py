"""The README's tour runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    namespace: dict = {}  # shared, like a notebook: later blocks use earlier imports
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["fwd"].shape == (64, 64, 64, 3)
    out = capsys.readouterr().out
    assert "mice" in out and "dice" in out
    assert "(1, 112, 112, 80, 1) (1, 112, 112, 80, 1)" in out
    assert (
        namespace["inverse_consistency"](namespace["fwd"], namespace["inv"], namespace["label"])[
            "mice"
        ]
        < 0.05
    )
