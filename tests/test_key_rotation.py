"""Rolling the cluster key: three steps, host by host, while reports flow, and none lost.

The key file's rules are in ``mesh/keyring.py``; a relay re-reads its file
when it changes (``node/keyfile.py``). The mesh test at the end is the
procedure the README gives an operator, run against three real relays,
each with its own copy of the key file, as three hosts would have.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mesh_cluster import CONVERGE, ROOT, STARTUP, Cluster, wait_until

from mesh import wire
from mesh.errors import LocalError
from mesh.keyring import KeyRing, format_keys, parse_keys, promote, retire, rotate
from node.config import Config
from node.errors import ConfigError
from node.keyfile import KeyWatch

OLD, NEW = b"o" * 32, b"n" * 32


def keygen(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", "keygen", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


# -- the key file ----------------------------------------------------------------


def test_a_rotation_is_three_steps_and_each_refuses_out_of_turn() -> None:
    ring = KeyRing((OLD,))
    with pytest.raises(LocalError, match="rotate first"):
        promote(ring)
    with pytest.raises(LocalError, match="nothing to retire"):
        retire(ring)
    step1 = rotate(ring, NEW)
    assert step1.current == OLD and step1.accepted == (OLD, NEW)
    with pytest.raises(LocalError, match="under way"):
        rotate(step1, b"x" * 32)
    step2 = promote(step1)
    assert step2.current == NEW and step2.accepted == (NEW, OLD)
    assert retire(step2) == KeyRing((NEW,))


def test_a_key_file_round_trips_and_names_the_bad_line() -> None:
    for ring in (KeyRing((OLD,)), KeyRing((OLD, NEW))):
        assert parse_keys(format_keys(ring)) == ring
    assert format_keys(KeyRing((OLD,))) == OLD.hex() + "\n"  # as `errmesh keygen` always wrote
    with pytest.raises(LocalError, match="line 2 is not hex"):
        parse_keys(f"{OLD.hex()}\nnot-a-key\n")
    with pytest.raises(LocalError, match="line 1 holds 8 bytes"):
        parse_keys("00" * 8)
    with pytest.raises(LocalError, match="holds no key"):
        parse_keys("# nothing\n\n")
    with pytest.raises(LocalError, match="at most 2"):
        parse_keys("\n".join(k.hex() for k in (OLD, NEW, b"x" * 32)))


def test_config_reads_the_ring_and_names_key_file_on_errors(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    path.write_text(format_keys(KeyRing((OLD, NEW))))
    config = Config(key_file=path)
    assert config.cluster_key() == OLD
    keys = config.cluster_keys()
    assert keys is not None and keys.accepted == (OLD, NEW)
    path.write_text("zz\n")
    with pytest.raises(ConfigError, match=r"key_file: .*line 1 is not hex"):
        config.cluster_key()


def test_frames_are_accepted_under_any_key_of_the_ring() -> None:
    msg = wire.AckMsg(ids=((b"o" * 16, 1),), acker="me")
    for signer in (OLD, NEW):
        assert wire.decode(wire.encode(msg, signer), (OLD, NEW)) == msg
    refused = wire.decode(wire.encode(msg, b"x" * 32), (OLD, NEW))
    assert isinstance(refused, wire.Rejected) and refused.reason == "bad-mac"
    with pytest.raises(LocalError):
        wire.decode(b"", ())


def test_a_relay_picks_up_a_changed_key_file_and_keeps_its_keys_on_a_bad_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cluster.key"
    path.write_text(format_keys(KeyRing((OLD,))))
    watch = KeyWatch(KeyRing((OLD,)), path)
    assert not watch.refresh()  # nothing changed: a stat, no read
    path.write_text(format_keys(KeyRing((OLD, NEW))))
    assert watch.refresh() and watch.accepted == (OLD, NEW) and watch.current == OLD
    path.write_text("garbage\n")
    assert not watch.refresh()
    assert watch.accepted == (OLD, NEW)
    assert "keeping the cluster keys held" in caplog.text
    path.unlink()
    assert not watch.refresh() and watch.current == OLD


def test_keygen_walks_the_three_steps_and_refuses_out_of_order(tmp_path: Path) -> None:
    path = tmp_path / "cluster.key"
    assert keygen(path).returncode == 0
    first = parse_keys(path.read_text())
    refused = keygen(path, "--promote")
    assert refused.returncode != 0 and "rotate first" in refused.stderr
    assert keygen(path, "--rotate").returncode == 0
    step1 = parse_keys(path.read_text())
    assert step1.current == first.current and len(step1.keys) == 2
    assert path.stat().st_mode & 0o777 == 0o600
    assert keygen(path, "--promote").returncode == 0
    step2 = parse_keys(path.read_text())
    assert step2.accepted == (step1.keys[1], first.current)
    done = keygen(path, "--retire")
    assert done.returncode == 0 and "only the current key" in done.stdout
    assert parse_keys(path.read_text()) == KeyRing((step1.keys[1],))


# -- the mesh ------------------------------------------------------------------------


def test_a_three_relay_mesh_rolls_its_key_while_reports_flow_and_loses_none(
    cluster: Cluster,
) -> None:
    hosts = ["r1", "r2", "r3"]
    files = {h: cluster.root / f"{h}.key" for h in hosts}
    for path in files.values():
        shutil.copy(cluster.key, path)
    r1 = cluster.start_relay(cluster.relay("r1"), key=files["r1"])
    r2 = cluster.start_relay(cluster.relay("r2"), bootstrap=[r1], key=files["r2"])
    r3 = cluster.start_relay(cluster.relay("r3"), bootstrap=[r1, r2], key=files["r3"])
    relays = {"r1": r1, "r2": r2, "r3": r3}
    machines = {h: cluster.machine(f"m-{h}") for h in hosts}
    master = cluster.root / "master.key"
    shutil.copy(cluster.key, master)
    kinds = ["ValueError", "LookupError", "ZeroDivisionError"]
    failures = 0

    def fail_everywhere() -> None:
        """One failing CLI per host, each with its host's key file as it is now."""
        nonlocal failures
        runs = [
            cluster.start_cli(machines[h], kinds[i], [relays[h].maddr], key=files[h])
            for i, h in enumerate(hosts)
        ]
        for run in runs:
            run.wait().check_failed_as_itself()
        failures += len(runs)

    fail_everywhere()
    for step in ("--rotate", "--promote", "--retire"):
        done = keygen(master, step)
        assert done.returncode == 0, done.stderr
        for host in hosts:  # host by host, failures in between: a mixed fleet
            reloads = relays[host].status().get("stats", {}).get("key_reloads", 0)
            shutil.copy(master, files[host])
            wait_until(
                lambda h=host, n=reloads: (
                    relays[h].status().get("stats", {}).get("key_reloads", 0) > n
                ),
                STARTUP,
                f"{host} re-reads its key file after {step}",
            )
            fail_everywhere()

    expected = {k: failures // len(kinds) for k in kinds}
    for relay in relays.values():
        wait_until(lambda r=relay: r.totals() == expected, CONVERGE, f"{relay.name} counts all")
        assert relay.rejected().get("bad-mac", 0) == 0, relay.rejected()
    for machine in machines.values():
        assert machine.spool_rows() == 0, "every report was acked"

    # After the roll, the old key opens nothing: its private network is gone
    # (its dial fails before Noise), so its report stays in its spool.
    old_only = cluster.root / "old.key"
    shutil.copy(cluster.key, old_only)
    outsider = cluster.machine("outsider")
    run = cluster.start_cli(
        outsider, "PermissionError", [r1.maddr], key=old_only, ERRMESH_ACK_TIMEOUT="1"
    )
    run.wait().check_failed_as_itself()
    assert outsider.spool_rows() == 1, "nobody acked the old key's report"
    assert "PermissionError" not in r1.totals()


def test_keygen_hands_a_go_or_js_peer_the_swarm_key(tmp_path: Path) -> None:
    from mesh.pnet import derive_psk, parse_swarm_key

    path, out = tmp_path / "cluster.key", tmp_path / "swarm.key"
    assert keygen(path).returncode == 0
    done = keygen(path, "--swarm-key", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text().startswith("/key/swarm/psk/1.0.0/\n/base16/\n")
    assert parse_swarm_key(out.read_bytes()) == derive_psk(parse_keys(path.read_text()).current)
    assert out.stat().st_mode & 0o777 == 0o600
    assert keygen(path, "--swarm-key", str(out)).returncode != 0  # no silent overwrite
