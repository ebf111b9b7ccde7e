"""Each package re-exports its public API, and importing a package does nothing else."""

from __future__ import annotations

import subprocess
import sys

import pytest

import github_sink
import mesh
import node
from conftest import ROOT


@pytest.mark.parametrize("package", [mesh, node, github_sink])
def test_every_exported_name_resolves(package: object) -> None:
    names = package.__all__  # type: ignore[attr-defined]
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(package, name) is not None, name


def test_unknown_names_are_attribute_errors() -> None:
    for package in (mesh, node, github_sink):
        with pytest.raises(AttributeError):
            package.no_such_thing  # type: ignore[attr-defined]  # noqa: B018


def test_importing_the_packages_loads_no_submodule_and_nothing_heavy() -> None:
    code = (
        "import sys; import mesh, github_sink, node; "
        "print(sorted(m for m in sys.modules if m.startswith(('mesh.', 'github_sink.', "
        "'msgpack', 'sqlite3', 'httpx', 'trio', 'libp2p'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("package", [mesh, github_sink])
def test_lazy_table_and_all_agree(package: object) -> None:
    assert set(package._EXPORTS) == set(package.__all__)  # type: ignore[attr-defined]
