"""The error path: from a raw report to a spooled, delivered one.

Order matters and is the same for every way in (excepthook, decorator,
``capture_exception``, ``errmesh run``):

1. scrub (secrets never reach ``before_send``, the spool or the wire);
2. ``before_send`` may edit or drop the report; its result is scrubbed again;
3. signature (after scrubbing, so a secret in a message cannot split groups);
4. bound to the wire limits;
5. spool: committed durably, stamped with (origin, seq, count); reports
   handed over to a local relay that never took them are spooled first;
6. deliver: solo mode merges into the local aggregate and runs one leader
   round with the configured sink; the mesh (issue 3) plugs in here as
   another :class:`Delivery`.

Everything heavy (msgpack, SQLite, the sink) is imported here, and this
module is imported only once an error has happened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from github_sink.sink import Replica, Sink
from mesh.aggregate import BundlePolicy, Limits
from mesh.errors import StoreError
from mesh.report import Report
from mesh.scrub import process_scrubber
from mesh.signature import report_signature
from mesh.store import Store
from mesh.wire import bound_report
from node.config import Config
from node.errors import ConfigError
from node.handover import take as take_handovers
from node.leader import RoundResult, act

__all__ = [
    "BeforeSend",
    "Delivery",
    "Outcome",
    "Pipeline",
    "SoloDelivery",
    "make_github_sink",
    "make_replica",
    "make_sink",
    "open_store",
]

BeforeSend = Callable[[Report], "Report | None"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happened to one captured error."""

    report: Report | None
    dropped_by_hook: bool = False
    round: RoundResult | None = None


class Delivery(Protocol):
    """Takes spooled reports onward (solo: local aggregate; mesh: gossip)."""

    def deliver(
        self, store: Store, reports: Sequence[Report], *, exiting: bool
    ) -> RoundResult | None: ...


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
        self, store: Store, reports: Sequence[Report], *, exiting: bool
    ) -> RoundResult | None:
        pending = store.pending()
        store.merge_reports(pending)
        sink = self._sink if self._sink is not None else make_sink(self.config)
        if sink is None:
            return None
        if sink is self._sink or not isinstance(sink, AbstractContextManager):
            return self._act(store, sink, pending, reports)
        with sink:  # a sink made here (GitHub: HTTP connections, outbox) is released here
            return self._act(store, sink, pending, reports)

    def _act(
        self, store: Store, sink: Sink, pending: Sequence[Report], reports: Sequence[Report]
    ) -> RoundResult:
        # Every spooled report came from a process that was failing; none of
        # them will come back to open its issue, so none waits for settle.
        # A mesh of one continues the latest leader's term: with a lower term
        # its links would lose to existing ones and it would act again and again.
        return act(
            store,
            sink,
            now=time.time(),
            term=store.max_link_term(),
            flush={r.signature for r in pending} | {r.signature for r in reports},
        )


class Pipeline:
    """Scrub, sign, bound, spool, deliver. One per configuration."""

    def __init__(
        self,
        config: Config,
        *,
        before_send: BeforeSend | None = None,
        delivery: Delivery | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.before_send = before_send
        self.scrubber = process_scrubber(
            extra_patterns=config.scrub_patterns,
            extra_keys=config.scrub_keys,
            token=config.github_token,
            environ=dict(os.environ if environ is None else environ),
        )
        self._delivery = delivery

    @property
    def delivery(self) -> Delivery:
        """Solo unless there is a mesh to hand reports to (peers or a local relay)."""
        if self._delivery is None:
            if self.config.peers or self.config.relay_socket.exists():
                from node.embedded import MeshDelivery

                self._delivery = MeshDelivery(self.config)
            else:
                self._delivery = SoloDelivery(self.config)
        return self._delivery

    def prepare(self, raw: Report) -> Report | None:
        """Steps 1-4: the report as it will be stored, or None if the hook dropped it."""
        report = self.scrubber.report(raw)
        if self.before_send is not None:
            edited = self.before_send(report)
            if edited is None:
                return None
            report = self.scrubber.report(edited)
        report = report.replace(signature=report_signature(report))
        return bound_report(report)

    def process(self, raw: Report, *, exiting: bool, skeleton: int | None = None) -> Outcome:
        """All steps. Raises ``StoreError``/``ConfigError``; the caller reports them once.

        ``skeleton``: the row committed for this error first (node/skeleton.py);
        the spool commit replaces it.
        """
        report = self.prepare(raw)
        if report is None:
            return Outcome(report=None, dropped_by_hook=True)
        with open_store(self.config) as store:
            stored = store.spool(report, skeleton=skeleton)
            result = self.delivery.deliver(store, [stored], exiting=exiting)
        return Outcome(report=stored, round=result)

    def deliver_spooled(self, *, exiting: bool) -> RoundResult | None:
        """Deliver what the spool holds, with no new report.

        For a hand-over whose row was committed but whose relay did not take
        the nudge: the row is spooled and delivered like this process's own
        report would have been. Raises ``StoreError``/``ConfigError``.
        """
        with open_store(self.config) as store:
            return self.delivery.deliver(store, [], exiting=exiting)
