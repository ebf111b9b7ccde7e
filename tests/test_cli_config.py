"""``errmesh config``: each setting's value and the source it came from.

Run as the real command line, with a real TOML file and environment: the
answer to "why does this relay use that folder?" must be what the command
prints, for every source (flag, environment, file, default), and the
GitHub token must never be printed.
"""

from __future__ import annotations

import json
from typing import Any

from conftest import Sandbox
from node.errors import ConfigError
from node.settings import SETTINGS, resolve_values

TOKEN = "ghp_" + "Sixteen0Chars1Of2Secret3Token4xy"


def shown(done: Any) -> dict[str, tuple[str, str]]:
    """``name = value  (source)`` lines as name -> (value, source)."""
    assert done.returncode == 0, done.stderr
    out = {}
    for line in done.stdout.splitlines():
        name, _, rest = line.partition(" = ")
        value, _, source = rest.rpartition("  (")
        out[name] = (value, source.removesuffix(")"))
    return out


def test_each_value_names_its_source_flag_environment_file_or_default(
    sandbox: Sandbox,
) -> None:
    (sandbox.root / "config.toml").write_text("window = 7\nsettle = 2\n[errmesh]\npriority = 5\n")
    done = sandbox.errmesh("--window", "9", "config", ERRMESH_SETTLE="3", GITHUB_TOKEN=TOKEN)
    settings = shown(done)
    file = f"file {sandbox.root / 'config.toml'}"
    assert settings["window"] == ("9.0", "flag")  # over the file's 7
    assert settings["settle"] == ("3.0", "env ERRMESH_SETTLE")  # over the file's 2
    assert settings["priority"] == ("5", file)
    assert settings["heartbeat"][1] == "default"
    assert settings["github_token"] == ("(set)", "env GITHUB_TOKEN")
    assert settings["cluster"] == ("test", "env ERRMESH_CLUSTER")  # the sandbox's
    assert list(settings) == [s.name for s in SETTINGS]  # every setting, in the table's order
    assert TOKEN not in done.stdout + done.stderr


def test_a_folder_from_xdg_says_so(sandbox: Sandbox) -> None:
    env = {k: v for k, v in sandbox.env.items() if k != "ERRMESH_STATE_DIR"}
    sandbox.env.clear()
    sandbox.env.update(env, XDG_STATE_HOME=str(sandbox.root / "xdg"))
    settings = shown(sandbox.errmesh("config"))
    assert settings["state_dir"] == (
        str(sandbox.root / "xdg" / "errmesh"),
        "default ($XDG_STATE_HOME)",
    )
    assert settings["data_dir"][1] == "env ERRMESH_DATA_DIR"


def test_json_gives_value_and_source_per_setting(sandbox: Sandbox) -> None:
    done = sandbox.errmesh("config", "--json", GH_TOKEN=TOKEN)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["github_token"] == {"value": "(set)", "source": "env GH_TOKEN"}
    assert data["log_level"] == {"value": "warning", "source": "default"}
    assert TOKEN not in done.stdout


def test_a_bad_value_that_falls_back_is_credited_to_the_source_that_held() -> None:
    problems: list[ConfigError] = []
    sources: dict[str, str] = {}
    values = resolve_values(
        environ={"ERRMESH_WINDOW": "soon"},
        file_values={"window": 4},
        file_name="cfg.toml",
        problems=problems,
        sources=sources,
    )
    assert values["window"] == 4.0 and sources["window"] == "file cfg.toml"
    assert [p.setting for p in problems] == ["ERRMESH_WINDOW"]
