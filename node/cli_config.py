"""``errmesh config``: every setting's value and where it came from.

"Why does this relay use that folder?" is answered by the source: a flag,
an environment variable (named), the TOML file (named) or the default.
The sources are recorded by the same code that resolves the values
(``node.settings.resolve_values``), so what is shown is what runs. The
GitHub token is never printed, only whether it is set.
"""

from __future__ import annotations

import json

import click

from node.config import load_config

__all__ = ["show_config"]


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show_config(ctx: click.Context, as_json: bool) -> None:
    """Print the effective settings and their sources (the token is masked)."""
    sources: dict[str, str] = {}
    config = load_config(dict(ctx.find_root().obj or {}), strict=True, sources=sources)
    items = config.public_items()
    if as_json:
        data = {name: {"value": value, "source": sources[name]} for name, value in items}
        click.echo(json.dumps(data, indent=2))
        return
    for name, value in items:
        click.echo(f"{name} = {value}  ({sources[name]})")
