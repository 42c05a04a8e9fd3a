"""No module in the package over 700 lines (issue #18): past that, a module holds two concepts."""

from __future__ import annotations

from pathlib import Path

import citygate

MAX_LINES = 700


def test_no_module_over_700_lines():
    root = Path(citygate.__file__).parent
    sizes = {p.relative_to(root).as_posix(): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert len(sizes) > 50  # the package was found
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, over
