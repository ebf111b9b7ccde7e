"""Grouping end to end: the same bug on two 'machines' is one signature.

The same small application is installed at two different paths (once in a
site-packages, as pip would, once as a source checkout), the second copy
with its code shifted down by a few lines (a different build), and run in
separate processes; different ids in the message and different absolute
paths must not split the group, while a different call site must.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import Sandbox

APP = textwrap.dedent(
    """
    import random
    import node

    def run(entry):
        node.install(app="shop")
        try:
            globals()[entry]()
        except LookupError as exc:
            print(node.capture_exception(exc))

    def load(order_id):
        raise LookupError(f"order {order_id} not found in /var/lib/shop/{order_id}.json")

    def main():
        load(random.randint(1, 10**9))

    def other():
        raise LookupError("order 7 not found in /var/lib/shop/7.json")
    """
)

RUN = """
import sys
sys.path.insert(0, sys.argv[1])
import shopapp
shopapp.run(sys.argv[2])
"""


def install_app(root: Path, shift: int) -> Path:
    package = root / "shopapp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("\n" * shift + APP)
    return root


def signature(sandbox: Sandbox, app_root: Path, entry: str = "main") -> str:
    done = sandbox.python(RUN, str(app_root), entry, ERRMESH_WINDOW="0")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_same_bug_at_different_paths_and_lines_is_one_signature(sandbox: Sandbox) -> None:
    # pip-installed on one machine, run from a checkout on the other.
    machine_a = install_app(sandbox.root / "a" / "lib" / "python3.11" / "site-packages", shift=0)
    machine_b = install_app(sandbox.root / "b" / "src" / "checkout", shift=7)
    first = signature(sandbox, machine_a)
    second = signature(sandbox, machine_b)
    assert len(first) == 12
    assert first == second
    (issue,) = sandbox.issues()
    assert issue["total"] == 2
    assert issue["title"] == "[errmesh] LookupError: order <n> not found in <path>"


def test_a_different_call_site_is_another_signature(sandbox: Sandbox) -> None:
    app = install_app(sandbox.root / "app", shift=0)
    assert signature(sandbox, app, "main") != signature(sandbox, app, "other")
