"""``errmesh members``: the mesh as this machine's relay sees it, like ``serf members``.

The relay writes what it hears (``node/members.py``) into its
``relay-status.json`` every second; this command reads that file, so it
needs no network and works while the relay is busy. Without a running
relay on this machine there is nobody to ask: the command says so and
exits 1.
"""

from __future__ import annotations

import json
import time

import click

from node.cli_table import local_relay_status, members_lines
from node.config import load_config

__all__ = ["members"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def members(ctx: click.Context, as_json: bool) -> None:
    """Peers this machine's relay hears: role, term, link, last heard, lag, address."""
    config = load_config(dict(ctx.find_root().obj or {}), strict=True)
    relay = local_relay_status(config.cluster_state_dir / "relay-status.json")
    if relay is None:
        raise click.ClickException(
            f"no relay is running on this machine for cluster {config.cluster} "
            f"(no fresh {config.cluster_state_dir / 'relay-status.json'}): "
            "`errmesh members` asks the local relay; start one with `errmesh relay`"
        )
    rows = relay.get("members", [])
    if as_json:
        data = {
            "cluster": config.cluster,
            "peer_id": relay.get("peer_id"),
            "leader": relay.get("leader"),
            "term": relay.get("term"),
            "members": rows,
        }
        click.echo(json.dumps(data, indent=2))
        return
    leader = relay.get("leader") or "none"
    click.echo(
        f"cluster {config.cluster}: {len(rows)} members, leader {leader} (term {relay.get('term')})"
    )
    for line in members_lines(rows, time.time()):
        click.echo(line)
