"""Repository-root conftest: makes ``tests.github_fake`` importable and loads its fixtures.

``tests/`` is not a package, and ``.venv/bin/pytest`` does not put the
repository root on ``sys.path``; this file (in pytest's rootdir) does, so
test modules and helpers import the fake GitHub as ``tests.github_fake``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

pytest_plugins = ["tests.github_fake.fixtures"]
