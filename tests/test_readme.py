"""The README's tour runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "mice" in out and "dice" in out
    assert namespace["fwd"].shape == (64, 64, 64, 3)
    assert (
        namespace["inverse_consistency"](namespace["fwd"], namespace["inv"], namespace["label"])[
            "mice"
        ]
        < 0.05
    )
