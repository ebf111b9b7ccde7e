"""Configuration: flags > environment > TOML file > defaults, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import Config, load_config, parse_bool, resolve, validate_flags
from node.errors import ConfigError
from node.settings import resolve_values

HOME = {"HOME": "/home/alice"}


def test_defaults_follow_xdg() -> None:
    config = resolve(environ=HOME)
    assert config.cluster == "default"
    assert config.state_dir == Path("/home/alice/.local/state/errmesh")
    assert config.cluster_state_dir == Path("/home/alice/.local/state/errmesh/default")
    assert config.resolved_issues_dir == Path("/home/alice/.local/share/errmesh/default/issues")
    assert config.window == 900.0
    assert config.sink_name == "file"


def test_xdg_variables_move_the_folders() -> None:
    config = resolve(environ={**HOME, "XDG_STATE_HOME": "/s", "XDG_DATA_HOME": "/d"})
    assert config.cluster_state_dir == Path("/s/errmesh/default")
    assert config.resolved_issues_dir == Path("/d/errmesh/default/issues")


def test_flags_beat_environment_beat_file_beat_defaults() -> None:
    file_values = {"cluster": "from-file", "window": 60, "settle": 2}
    env = {**HOME, "ERRMESH_CLUSTER": "from-env", "ERRMESH_WINDOW": "30"}
    config = resolve(flags={"cluster": "from-flag"}, environ=env, file_values=file_values)
    assert config.cluster == "from-flag"
    assert config.window == 30.0
    assert config.settle == 2.0
    assert config.log_lines == 50


@pytest.mark.parametrize("text", ["true", "TRUE", "True", "1", "yes", "YES", "Yes", "on"])
def test_the_original_tools_true_values(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["false", "FALSE", "0", "no", "No", "off", ""])
def test_false_values(text: str) -> None:
    assert parse_bool(text) is False


def test_original_tool_variables_are_aliases() -> None:
    env = {
        **HOME,
        "IPFS_AUTO_ISSUE": "yes",
        "IPFS_AUTO_PR": "TRUE",
        "IPFS_AUTO_HEAL": "1",
        "IPFS_REPO": "acme/widgets",
    }
    config = resolve(environ=env)
    assert (config.auto_issue, config.auto_pr, config.auto_heal) == (True, True, True)
    assert config.repo == "acme/widgets"
    assert config.sink_name == "github"


def test_errmesh_variable_wins_over_its_alias() -> None:
    env = {**HOME, "IPFS_AUTO_PR": "true", "ERRMESH_AUTO_PR": "false"}
    assert resolve(environ=env).auto_pr is False


def test_auto_issue_off_disables_the_sink() -> None:
    assert resolve(environ={**HOME, "IPFS_AUTO_ISSUE": "false"}).sink_name == "none"


def test_token_sources_in_order_and_never_in_repr() -> None:
    env = {**HOME, "GH_TOKEN": "gh-token", "GITHUB_TOKEN": "github-token"}
    config = resolve(environ=env)
    assert config.github_token == "github-token"
    assert "github-token" not in repr(config)
    assert ("github_token", "(set)") in config.public_items()
    env["ERRMESH_GITHUB_TOKEN"] = "errmesh-token"
    assert resolve(environ=env).github_token == "errmesh-token"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ERRMESH_AUTO_PR": "maybe"}, "ERRMESH_AUTO_PR"),
        ({"IPFS_AUTO_ISSUE": "sure"}, "IPFS_AUTO_ISSUE"),
        ({"ERRMESH_WINDOW": "soon"}, "ERRMESH_WINDOW"),
        ({"ERRMESH_WINDOW": "-5"}, "ERRMESH_WINDOW"),
        ({"ERRMESH_LOG_LINES": "0"}, "ERRMESH_LOG_LINES"),
        ({"IPFS_REPO": "not-a-repo"}, "IPFS_REPO"),
        ({"ERRMESH_CLUSTER": "../escape"}, "ERRMESH_CLUSTER"),
        ({"ERRMESH_SINK": "email"}, "ERRMESH_SINK"),
        ({"ERRMESH_GITHUB_API_URL": "ftp://x"}, "ERRMESH_GITHUB_API_URL"),
    ],
)
def test_invalid_values_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(environ={**HOME, **env})
    assert info.value.setting == named
    assert named in str(info.value)


def test_unknown_flag_is_an_error_listing_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown option") as info:
        validate_flags({"windwo": 5})
    assert info.value.setting == "windwo"
    assert "window" in str(info.value)


def test_toml_file_values_and_errermesh_table(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[errmesh]\ncluster = "prod"\nwindow = 120\nscrub_keys = ["pin", "otp"]\n')
    config = load_config(environ={**HOME, "ERRMESH_CONFIG": str(path)})
    assert config.cluster == "prod"
    assert config.window == 120.0
    assert config.scrub_keys == ("pin", "otp")


def test_bad_toml_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("window = 'later'\n")
    with pytest.raises(ConfigError, match="window") as info:
        load_config(strict=True, environ={**HOME, "ERRMESH_CONFIG": str(path)})
    assert str(path) in info.value.setting
    path.write_text("window = = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(strict=True, environ={**HOME, "ERRMESH_CONFIG": str(path)})


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(strict=True, environ={**HOME, "ERRMESH_CONFIG": str(tmp_path / "nope.toml")})


def test_missing_default_config_file_is_fine(tmp_path: Path) -> None:
    config = load_config(environ={"HOME": str(tmp_path)})
    assert config == Config(
        state_dir=tmp_path / ".local/state/errmesh", data_dir=tmp_path / ".local/share/errmesh"
    )


def test_config_is_frozen() -> None:
    config = resolve(environ=HOME)
    with pytest.raises(AttributeError):
        config.window = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (
            "ERRMESH_PEERS",
            "/ip4/127.0.0.1/tcp/4747/p2p/12D3KooWQnwEGNqcM2nAcPtRR9rAX8Hrg4k9kJLCHoZG5m8gQcPb",
        ),
        (
            "ERRMESH_PEERS",
            "/dns4/relay.example/tcp/4747/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
        ),
        ("ERRMESH_LISTEN", "/ip6/::/tcp/4747,/ip4/0.0.0.0/tcp/0"),
        ("ERRMESH_STATUS_PORT", "65535"),
        ("ERRMESH_STATUS_LISTEN", "0.0.0.0:9464"),
        ("ERRMESH_STATUS_LISTEN", "[::]:0"),
        ("ERRMESH_LOG_FORMAT", "JSON"),
        ("ERRMESH_SCRUB_PATTERNS", r"token=\w+,sk-[a-z]+"),
    ],
)
def test_valid_addresses_ports_and_patterns_pass(name: str, value: str) -> None:
    resolve(environ={**HOME, name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ERRMESH_PEERS", "/ip4/127.0.0.1/tcp/4747"),  # no peer id: acks cannot be trusted
        (
            "ERRMESH_PEERS",
            "/ip4/300.0.0.1/tcp/4747/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
        ),
        ("ERRMESH_LISTEN", "127.0.0.1:4603"),
        ("ERRMESH_LISTEN", "/ip4/127.0.0.1/tcp/99999"),
        ("ERRMESH_STATUS_PORT", "-1"),
        ("ERRMESH_STATUS_LISTEN", "9464"),
        ("ERRMESH_STATUS_LISTEN", "0.0.0.0:65536"),
        ("ERRMESH_STATUS_LISTEN", ":9464"),
        ("ERRMESH_LOG_FORMAT", "logfmt"),
        ("ERRMESH_HEARTBEAT", "0"),
        ("ERRMESH_ACK_TIMEOUT", "0"),
        ("ERRMESH_SCRUB_PATTERNS", "ok,(unclosed"),
    ],
)
def test_invalid_addresses_ports_durations_and_patterns_are_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(environ={**HOME, name: value})
    assert info.value.setting == name


def test_lenient_resolution_falls_back_per_setting_and_lists_the_problems() -> None:
    problems: list[ConfigError] = []
    values = resolve_values(
        environ={**HOME, "ERRMESH_HEARTBEAT": "abc", "ERRMESH_PRIORITY": "7"},
        file_values={"heartbeat": 2.0, "window": "later", "bogus": 1},
        file_name="c.toml",
        problems=problems,
    )
    assert values["heartbeat"] == 2.0  # the file's value under the bad environment one
    assert values["priority"] == 7 and "window" not in values
    assert [p.setting for p in problems] == ["c.toml: window", "c.toml: bogus", "ERRMESH_HEARTBEAT"]


def test_the_lean_ipv4_check_agrees_with_ipaddress() -> None:
    """Peers' IPv4 addresses are checked without importing ``ipaddress`` (a
    failing CLI's hand-over reads them); it must accept exactly what it does."""
    import ipaddress

    from hypothesis import given
    from hypothesis import strategies as st

    from node.settings import _is_ip4

    part = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["", "00", "01", "x", "٤"]))

    @given(st.lists(part, min_size=1, max_size=5).map(".".join))
    def agrees(text: str) -> None:
        try:
            expected = ipaddress.ip_address(text).version == 4
        except ValueError:
            expected = False
        assert _is_ip4(text) == expected

    agrees()


def test_the_status_address_keeps_status_port_as_its_port() -> None:
    """``status_listen`` is new; a relay configured with ``status_port`` alone binds as before."""
    assert resolve(environ=HOME).status_address == ("127.0.0.1", 0)
    assert resolve(environ={**HOME, "ERRMESH_STATUS_PORT": "9100"}).status_address == (
        "127.0.0.1",
        9100,
    )
    both = {"ERRMESH_STATUS_PORT": "9100", "ERRMESH_STATUS_LISTEN": "0.0.0.0:9464"}
    assert resolve(environ={**HOME, **both}).status_address == ("0.0.0.0", 9464)
    wildcard = {"ERRMESH_STATUS_PORT": "9100", "ERRMESH_STATUS_LISTEN": "[::]:0"}
    assert resolve(environ={**HOME, **wildcard}).status_address == ("::", 9100)


def test_the_default_listen_port_is_not_ipfs() -> None:
    """4001 is kubo's swarm port: a relay beside an IPFS node would fail to start."""
    assert resolve(environ=HOME).listen == ("/ip4/0.0.0.0/tcp/4747",)
