"""A node's parts, built from a ``Config``: the store, the sinks, solo delivery, a relay.

The one place that turns settings into running parts, for every way
errmesh runs: the error path (``node.pipeline``) and the embedded mesh
delivery (``node.embedded``) deliver through them, a relay
(``node.relay``) and the operator commands (``node.cli``) open them. Both
error paths import this module, and it imports neither (no cycle). The
relay's parts (trio, libp2p) are imported only by :func:`open_relay`, so the
error path does not pay for them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from github_sink.sink import Replica, Sink
from mesh.bundling import BundlePolicy
from mesh.errors import StoreError
from mesh.report import Report
from mesh.sigstate import Limits
from mesh.store import Store
from node.config import Config
from node.errors import ConfigError
from node.handover import take as take_handovers
from node.leader import RoundResult, act

if TYPE_CHECKING:
    from node.relay import MeshPeer, PeerOptions

__all__ = [
    "SoloDelivery",
    "make_github_sink",
    "make_replica",
    "make_sink",
    "open_relay",
    "open_store",
    "peer_options",
]


def make_sink(config: Config) -> Sink | None:
    """The sink the configuration asks for; None when issues are disabled.

    Raises ``ConfigError`` for a sink that cannot be used.
    """
    name = config.sink_name
    if name == "none":
        return None
    if name == "file":
        from github_sink.file_sink import FileSink

        return FileSink(config.resolved_issues_dir)
    return make_github_sink(config)


def make_replica(config: Config) -> Replica | None:
    """A relay's copy of the file sink's issues, whether or not it may lead.

    With files every machine must show every issue, as GitHub would; a
    GitHub sink needs no copy.
    """
    if config.sink_name != "file":
        return None
    from github_sink.file_sink import FileSink

    return FileSink(config.resolved_issues_dir)


def make_github_sink(config: Config, *, environ: Mapping[str, str] | None = None) -> Sink:
    """The GitHub sink of ``config``; raises ``ConfigError`` naming what is missing.

    The token comes from the configuration (``ERRMESH_GITHUB_TOKEN``,
    ``GITHUB_TOKEN``, ``GH_TOKEN``), else from ``gh auth token``; a dry run
    needs none.
    """
    from github_sink.budget import BudgetLimits
    from github_sink.github import GitHubSink, GitHubSinkOptions
    from github_sink.settings import GitHubSettings, find_token

    if not config.repo:
        raise ConfigError("ERRMESH_REPO", "the GitHub sink needs a repository (OWNER/NAME)")
    token = config.github_token or find_token(
        os.environ if environ is None else environ, api_url=config.github_api_url
    )
    if token is None and not config.github_dry_run:
        raise ConfigError(
            "ERRMESH_GITHUB_TOKEN",
            "no GitHub token: set ERRMESH_GITHUB_TOKEN (or GITHUB_TOKEN / GH_TOKEN), "
            "run `gh auth login`, or set ERRMESH_GITHUB_DRY_RUN=1",
        )
    settings = GitHubSettings(
        repo=config.repo,
        token=token,
        api_url=config.github_api_url,
        timeout=config.github_timeout,
        dry_run=config.github_dry_run,
        budget=BudgetLimits(
            per_minute=config.github_per_minute,
            per_hour=config.github_per_hour,
            min_interval=config.github_min_interval,
        ),
    )
    options = GitHubSinkOptions(
        auto_pr=config.auto_pr,
        auto_heal=config.auto_heal,
        fixer=config.fixer,
        fixer_timeout=config.fixer_timeout,
        window=config.window,
    )
    outbox_dir = None if config.github_dry_run else config.cluster_state_dir
    return GitHubSink.open(settings, options, outbox_dir)


def open_store(config: Config, *, take: bool = True) -> Store:
    """The cluster's store with the configuration's bounds and policy.

    ``take``: first move into the spool what failing processes committed for
    a relay that never took it, and the skeletons of processes that died
    while reporting (node/handover.py): every errmesh process that opens the
    store does, so no committed report waits for one particular process.
    When that cannot be done (a read-only or full store) the rows stay, and
    ``Store.statistics`` counts them as pending.
    """
    store = Store.open(
        config.cluster_state_dir,
        max_reports=config.spool_max_reports,
        max_bytes=config.spool_max_bytes,
        sync=config.spool_sync,
        policy=BundlePolicy(
            settle=config.settle,
            window=config.window,
            reopen_on_regression=config.reopen_on_regression,
        ),
        limits=Limits(max_signatures=config.max_signatures),
    )
    if take:
        try:
            take_handovers(store)
        except StoreError:
            pass  # counted as pending; the spool itself may still be usable
    return store


class SoloDelivery:
    """A mesh of one: merge into the local aggregate, act as the leader.

    Pending reports of earlier processes (killed before this step) are merged
    too, so nothing spooled is ever stranded. The signatures of the reports
    in hand are flushed: a process about to exit writes a new signature's
    issue now instead of waiting for the settle delay. The sink is built
    after the merge, so a bad sink setting never costs a report.
    """

    def __init__(self, config: Config, sink: Sink | None = None) -> None:
        self.config = config
        self._sink = sink

    def deliver(
        self,
        store: Store,
        reports: Sequence[Report],
        *,
        exiting: bool,
        merged: Iterable[bytes] = (),
    ) -> RoundResult | None:
        """``merged``: signatures of spooled reports the caller merged already
        (``errmesh drain``, batch by batch): flushed like the pending ones."""
        pending = store.pending()
        store.merge_reports(pending)
        flush = {r.signature for r in pending} | {r.signature for r in reports} | set(merged)
        sink = self._sink if self._sink is not None else make_sink(self.config)
        if sink is None:
            return None
        if sink is self._sink or not isinstance(sink, AbstractContextManager):
            return self._act(store, sink, flush)
        with sink:  # a sink made here (GitHub: HTTP connections, outbox) is released here
            return self._act(store, sink, flush)

    def _act(self, store: Store, sink: Sink, flush: set[bytes]) -> RoundResult:
        # Every spooled report came from a process that was failing; none of
        # them will come back to open its issue, so none waits for settle.
        # A mesh of one continues the latest leader's term: with a lower term
        # its links would lose to existing ones and it would act again and again.
        return act(
            store,
            sink,
            now=time.time(),
            term=store.max_link_term(),
            flush=flush,
        )


def peer_options(config: Config, *, key: bytes | None) -> PeerOptions:
    """The relay's options from the settings (its tuning values included)."""
    from mesh.antientropy import AntiEntropyOptions
    from mesh.gossip import topics_for
    from mesh.relay_policy import RelayOptions
    from node.relay import PeerOptions

    reports_topic, control_topic = topics_for(config.cluster)
    return PeerOptions(
        reports_topic=reports_topic,
        control_topic=control_topic,
        key=key,
        eligible=config.eligible,
        priority=config.priority,
        heartbeat=config.heartbeat,
        digest_every=config.digest_every,
        private_network=config.private_network,
        status_path=config.cluster_state_dir / "relay-status.json",
        relay=RelayOptions(backlog_max=config.backlog_max),
        antientropy=AntiEntropyOptions(digest_batch=config.digest_batch),
    )


@contextlib.asynccontextmanager
async def open_relay(config: Config) -> AsyncIterator[MeshPeer]:
    """A relay over its store, sink and gossip, not yet running (``peer.run``).

    Raises ``ConfigError`` for bad settings; closes what it opened on exit.
    """
    from mesh.gossip import GossipConfig, open_gossip
    from node.admission import RejectionCounter, make_validator
    from node.keyfile import KeyWatch
    from node.relay import MeshPeer

    keys = KeyWatch(config.cluster_keys(), config.key_file)
    options = peer_options(config, key=keys.current)
    sink = make_sink(config) if config.eligible else None
    replica = sink if isinstance(sink, Replica) else make_replica(config)
    rejections = RejectionCounter()
    handle: list[Any] = []
    validator = make_validator(
        lambda: keys.accepted, rejections, on_ban=lambda p: handle[0].ban(p) if handle else None
    )
    gossip_config = GossipConfig(
        topics=(options.reports_topic, options.control_topic),
        listen=config.listen,
        bootstrap=config.peers,
        identity_path=config.cluster_state_dir / "identity.key",
        library_logs=config.log_level == "debug",
        network_keys=config.network_keys(keys.ring),
    )
    with open_store(config) as store:
        async with open_gossip(gossip_config, validator) as gossip:
            handle.append(gossip)
            yield MeshPeer(
                store=store,
                gossip=gossip,
                sink=sink,
                replica=replica,
                rejections=rejections,
                options=options,
                keys=keys,
            )
