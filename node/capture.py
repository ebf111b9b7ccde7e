"""The capture API that lives inside the host program.

Two promises shape this module:

- **Nothing on the success path.** ``import node`` and ``node.install()``
  import only the standard library (no libp2p, trio, httpx, msgpack), start no
  thread, open no socket and no file. They chain the exception hooks and add
  a logging handler that keeps references to the last records; formatting,
  configuration files, scrubbing, SQLite and the sink are loaded only once an
  error has been captured (``node.error_path``, ``node.pipeline``).
- **Capture never hurts the host.** Every failure inside errmesh is caught,
  said once on stderr, and the host goes on with its own exit status; the
  previous hooks are always called; interactive shells are left alone.

Like sentry-python's hub, one module-level :class:`_Hub` holds the installed
state; ``install()`` again replaces its options, ``uninstall()`` restores
the previous hooks.
"""

from __future__ import annotations

import sys
import time

from node.errors import CapturedMessage

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~2 ms
if TYPE_CHECKING:
    import logging
    import threading
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType
    from typing import Any, TypeVar

    from node.config import Config
    from node.pipeline import BeforeSend, Delivery, Outcome, Pipeline

    F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "add_breadcrumb",
    "capture_exception",
    "capture_message",
    "install",
    "last_outcome",
    "report_errors",
    "set_context",
    "set_tag",
    "set_user",
    "uninstall",
]

#: Distinct tags and contexts the hub holds (a host that tags by request id
#: must not grow it for ever); a report keeps node.cut.MAX_TAGS of them.
_SCOPE_KEYS = 64


class _LogRing:
    """Keeps the last ``capacity`` log records; formats them only when asked.

    It is fed by wrapping ``logging.Logger.callHandlers`` (as sentry-python
    does) rather than by adding a root handler: a handler on the root logger
    would make the host's own ``logging.basicConfig()`` a silent no-op, and
    would miss loggers that do not propagate. Holding a reference is O(1) per
    record; formatting happens once, on the error path. A record at or above
    ``threshold`` (``capture_log_level``) goes to ``on_record`` after the
    host's handlers have run (node/log_capture.py).
    """

    def __init__(self, capacity: int, on_record: Callable[[logging.LogRecord], None]) -> None:
        import collections

        self.records: collections.deque[logging.LogRecord] = collections.deque(maxlen=capacity)
        self.capacity = capacity
        self.on_record = on_record
        #: logging's number of capture_log_level; node/log_capture.py sets both.
        self.threshold = 1 << 30
        self.resolved = True
        self._original: Any = None

    def attach(self) -> None:
        import logging

        original = logging.Logger.callHandlers
        ring = self.records

        def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
            ring.append(record)
            original(logger, record)
            if record.levelno >= self.threshold:
                self.on_record(record)

        call_handlers.__errmesh_original__ = original  # type: ignore[attr-defined]
        self._original = original
        logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign,assignment]

    def lines(self) -> tuple[str, ...]:
        from node.trail import log_lines

        return log_lines(list(self.records), self.capacity)


class _WhenImported:
    """Run a callback right after a module is first imported.

    A meta-path finder that steps aside as soon as it has wrapped the loader
    of the module it waits for. It lets ``install()`` attach the log ring and
    chain ``threading.excepthook`` without importing ``logging`` or
    ``threading`` itself: a host that never logs never pays for logging.
    """

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        self.remove()
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec else None
            if spec is not None and spec.loader is not None:
                spec.loader = _ThenLoader(spec.loader, self.callback)
                return spec
        return None

    def remove(self) -> None:
        while self in sys.meta_path:
            sys.meta_path.remove(self)


class _ThenLoader:
    """A loader that defers to the real one, then calls back."""

    def __init__(self, loader: Any, callback: Callable[[], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        try:
            self._callback()
        except Exception:
            pass  # never break the host's import

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def _when_imported(name: str, callback: Callable[[], None], watchers: list[_WhenImported]) -> None:
    if name in sys.modules:
        callback()
        return
    watcher = _WhenImported(name, callback)
    sys.meta_path.insert(0, watcher)
    watchers.append(watcher)


class _Hub:
    """The installed state: options, hooks, log ring, and the lazy pipeline."""

    def __init__(self) -> None:
        self.flags: dict[str, Any] = {}
        self.before_send: BeforeSend | None = None
        self.delivery: Delivery | None = None
        self.ring: _LogRing | None = None  # once logging is imported
        self.prev_excepthook: Callable[..., Any] | None = None
        self.prev_threading_hook: Callable[..., Any] | None = None
        self.installed = False
        self.warned = False
        self.last: Outcome | None = None
        self.watchers: list[_WhenImported] = []
        self.caller_package = ""
        self.tags: dict[object, object] = {}  # node.set_tag; node/scope.py reads them
        self.contexts: dict[object, object] = {}
        #: node.add_breadcrumb's (time, message, category, level, data), oldest first.
        self.crumbs: list[tuple[float, object, object, object, object]] = []
        #: Lines of log records and breadcrumbs a report keeps (the log_lines setting).
        self.trail_capacity = 50
        self._pipeline: Pipeline | None = None
        #: The thread running the error path, if one is (an error inside it is not reported).
        self._busy: int | None = None

    # -- lazy heavy parts ---------------------------------------------------

    def config(self) -> Config:
        from node.config import load_config

        return load_config(self.flags)

    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            from node.pipeline import Pipeline

            self._pipeline = Pipeline(
                self.config(), before_send=self.before_send, delivery=self.delivery
            )
        return self._pipeline

    def reset(self) -> None:
        self._pipeline = None

    # -- capture --------------------------------------------------------------

    def capture(
        self,
        exc: BaseException,
        *,
        exiting: bool,
        fingerprint: Sequence[str] | None = None,
    ) -> Outcome | None:
        """Run the error path; never raises, never runs twice for one exception.

        Another thread's error waits for the lock rather than being lost (a
        log record of another thread, node/log_capture.py, is one). An
        exception group is reported leaf by leaf (node/groups.py); the
        outcome is the last leaf's.
        """
        import _thread  # threading's lock without importing threading (~3 ms)

        me = _thread.get_ident()
        if getattr(exc, "__errmesh_seen__", False) or self._busy == me:
            return None  # already reported, or an error inside our own error path
        try:
            exc.__errmesh_seen__ = True  # type: ignore[attr-defined]
        except Exception:
            pass
        from node.groups import capture_leaves

        split, outcome = capture_leaves(self, exc, exiting=exiting, fingerprint=fingerprint)
        if split:
            return outcome
        try:
            with _LOCK.setdefault("lock", _thread.allocate_lock()):
                self._busy = me
                try:
                    from node.error_path import report

                    return report(self, exc, exiting=exiting, fingerprint=fingerprint)
                finally:
                    self._busy = None
        except BaseException as failure:
            self.warn(f"{type(failure).__name__}: {failure}")
            return None

    def warn(self, message: str) -> None:
        """Say once per process that errmesh failed; the host goes on."""
        if self.warned:
            return
        self.warned = True
        try:
            sys.stderr.write(f"errmesh: could not record this error: {message}\n")
            sys.stderr.flush()
        except Exception:
            pass

    def is_error(self, exc: BaseException) -> bool:
        if isinstance(exc, SystemExit):
            return exc.code not in (None, 0)
        if isinstance(exc, KeyboardInterrupt):
            try:  # the setting may come from the environment or the file
                return self.pipeline().config.capture_keyboard_interrupt
            except Exception:
                return False
        return True

    # -- hooks ----------------------------------------------------------------

    def excepthook(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        try:
            if exc is not None and self.is_error(exc):
                if exc.__traceback__ is None and tb is not None:
                    exc = exc.with_traceback(tb)
                self.capture(exc, exiting=True)
        finally:
            previous = self.prev_excepthook or sys.__excepthook__
            previous(exc_type, exc, tb)
            if isinstance(exc, KeyboardInterrupt):
                _keep_sigint_exit()

    def threading_hook(self, args: threading.ExceptHookArgs) -> None:
        import threading

        try:
            if args.exc_value is not None and self.is_error(args.exc_value):
                self.capture(args.exc_value, exiting=False)
        finally:
            previous = self.prev_threading_hook or threading.__excepthook__
            previous(args)

    def attach_ring(self) -> None:
        if self.ring is None:
            self.ring = _LogRing(self.trail_capacity, self.log_record)
            self.ring.attach()
        import os  # loaded at start-up: free

        from node.log_capture import UNRESOLVED, threshold_of

        threshold = threshold_of(self.flags, os.environ)
        self.ring.resolved = threshold is not None
        self.ring.threshold = UNRESOLVED if threshold is None else threshold

    def log_record(self, record: logging.LogRecord) -> None:
        """A record at ``capture_log_level`` or above: maybe a report (node/log_capture.py)."""
        import _thread

        if self._busy == _thread.get_ident():
            return  # errmesh's own error path logging: never a report
        try:
            from node.log_capture import capture_record

            capture_record(self, record)
        except Exception as failure:
            self.warn(f"{type(failure).__name__}: {failure}")

    def chain_threading(self) -> None:
        import threading

        if self.installed and threading.excepthook != self.threading_hook:
            self.prev_threading_hook = threading.excepthook
            threading.excepthook = self.threading_hook


def _keep_sigint_exit() -> None:
    """Let the process still end "killed by SIGINT" after Ctrl-C.

    CPython exits by SIGINT on an unhandled KeyboardInterrupt only while an
    internal flag is set, and every ``exec()`` of a string clears it (creating
    a dataclass does that, so loading errmesh's error path does). A string
    evaluation that ends in KeyboardInterrupt sets the flag again.
    """
    try:
        exec("raise KeyboardInterrupt")
    except KeyboardInterrupt:
        pass


_hub = _Hub()
_LOCK: dict[str, Any] = {}


def warn_failure(message: str) -> None:
    """Say once per process, on stderr, that errmesh could not record an error.

    For the other error paths of this process (``errmesh run``): one line
    per process whichever path failed, and the host goes on.
    """
    _hub.warn(message)


def _caller_package() -> str:
    """The top-level package of the code that called ``install()``.

    A CLI installed with pip lives in site-packages, where every frame would
    count as library code; the package that installs errmesh is the host
    program itself, so its frames are in-app wherever it is installed, and
    the same bug groups the same on a machine that runs it from a checkout.
    """
    try:
        name = str(sys._getframe(2).f_globals.get("__name__", ""))
    except (AttributeError, ValueError):
        return ""
    top = name.partition(".")[0]
    return "" if top in ("", "__main__", "node") else top


def _interactive() -> bool:
    return hasattr(sys, "ps1") or bool(sys.flags.interactive)


def install(
    app: str = "",
    *,
    before_send: BeforeSend | None = None,
    delivery: Delivery | None = None,
    **options: Any,
) -> None:
    """Report this program's unhandled errors. Call once, early in ``main``.

    Chains ``sys.excepthook`` and ``threading.excepthook`` (the previous hooks
    still run) and keeps the last log records of every logger. ``options``
    are settings of ``node.config.Config`` (``cluster="prod"``, ``window=60``);
    they win over the environment and the config file. Raises
    ``node.errors.ConfigError`` for an unknown option or a bad value, so a
    mistake shows at start-up rather than at the first crash. In an
    interactive shell only the log ring is set up: the REPL's own errors are
    not reports. ``before_send(report)`` or ``before_send(report, hint)``
    (sentry-python's: ``hint["exc_info"]`` holds the original exception)
    gets the scrubbed report and returns it, edited, or None to drop it.
    """
    if not isinstance(app, str):
        from node.errors import ConfigError

        raise ConfigError("app", f"expected a string, got {type(app).__name__}")
    flags: dict[str, Any] = {}
    if options:
        from node.settings import validate_flags

        flags = validate_flags(options)
    if app:
        flags["app"] = app.strip()
    hub = _hub
    hub.flags = flags
    hub.trail_capacity = int(flags.get("log_lines", 50))
    hub.caller_package = _caller_package()
    hub.before_send = before_send
    hub.delivery = delivery
    hub.reset()
    _when_imported("logging", hub.attach_ring, hub.watchers)
    if hub.installed or _interactive():
        return
    hub.prev_excepthook = sys.excepthook
    sys.excepthook = hub.excepthook
    hub.installed = True
    _when_imported("threading", hub.chain_threading, hub.watchers)


def uninstall() -> None:
    """Restore the previous hooks and remove the log handler."""
    from node.uninstall import uninstall_hub  # rare: kept off the success path

    uninstall_hub(_hub)


def capture_exception(
    exc: BaseException | None = None, *, fingerprint: Sequence[str] | None = None
) -> str | None:
    """Report ``exc`` (default: the exception being handled); return its signature.

    Returns the 12-hex-digit signature, or None when nothing was recorded
    (no exception, dropped by ``before_send``, or errmesh failed — said once
    on stderr). Never raises.
    """
    if exc is None:
        exc = sys.exc_info()[1]
        if exc is None:
            return None
    outcome = _hub.capture(exc, exiting=False, fingerprint=fingerprint)
    if outcome is None or outcome.report is None:
        return None
    return outcome.report.signature.hex()[:12]


def capture_message(
    text: str, level: str = "info", *, fingerprint: Sequence[str] | None = None
) -> str | None:
    """Report ``text`` at ``level`` (debug, info, warning, error, fatal); return its signature.

    sentry-python's ``capture_message``: grouped by the text (numbers and
    ids normalised) and the caller's in-app frames, like an exception of
    type ``Message``; the level sets the severity and is shown as a tag.
    Returns None when nothing was recorded. Never raises.
    """
    from node.scope import stack_of

    message = CapturedMessage(text if isinstance(text, str) else repr(text), level)
    message = message.with_traceback(stack_of(sys._getframe(1)))
    outcome = _hub.capture(message, exiting=False, fingerprint=fingerprint)
    if outcome is None or outcome.report is None:
        return None
    return outcome.report.signature.hex()[:12]


def set_tag(key: str, value: object) -> None:
    """Show ``key: value`` in every later report (sentry-python's ``set_tag``).

    Stored as given, at the cost of one dict assignment; turned into text,
    bounded and scrubbed only when an error is reported. Tags never change
    the signature: a ``fingerprint`` does that. Beyond 64 distinct keys new
    ones are ignored.
    """
    tags = _hub.tags
    if key in tags or len(tags) < _SCOPE_KEYS:
        tags[key] = value


def set_context(name: str, value: Mapping[str, object] | None) -> None:
    """Show ``value``'s keys as ``name.key`` in every later report; None forgets it.

    A shallow copy is kept, so the context is what it was when set.
    """
    contexts = _hub.contexts
    if value is None:
        contexts.pop(name, None)
    elif name in contexts or len(contexts) < _SCOPE_KEYS:
        contexts[name] = dict(value)


def set_user(id: object = None, name: object = None) -> None:
    """Who was using the program: an id and a name only (the ``user`` context).

    ``set_user(None)`` forgets the user. sentry-python's dict
    (``set_user({"id": 7, "username": "ada", "email": ...})``) works too:
    its id and username are kept, anything else is dropped unread.
    """
    if isinstance(id, dict):
        found = {k: id[k] for k in ("id", "username") if id.get(k) is not None}
        id, name = found.get("id"), found.get("username", name)
    user = {k: v for k, v in (("id", id), ("name", name)) if v is not None}
    set_context("user", user or None)


def add_breadcrumb(
    message: object = "",
    category: object = "",
    level: object = "info",
    data: Mapping[str, object] | None = None,
) -> None:
    """Remember that something happened; shown with the log tail if an error follows.

    sentry-python's ``add_breadcrumb`` (its dict, ``add_breadcrumb({"message":
    ...})``, works too). Kept as given in a ring of ``log_lines`` entries,
    at the cost of a clock read and a list append; formatted, bounded and
    scrubbed only when an error is reported (node/trail.py).
    """
    crumbs = _hub.crumbs
    crumbs.append((time.time(), message, category, level, data))
    if len(crumbs) > _hub.trail_capacity:
        del crumbs[0]


def last_outcome() -> Outcome | None:
    """What happened to the last captured error (for tests and ``errmesh``)."""
    return _hub.last


class _ReportErrors:
    """Decorator and context manager: report what escapes, then re-raise."""

    def __init__(self, fingerprint: Sequence[str] | None = None) -> None:
        self.fingerprint = fingerprint

    def __call__(self, func: F) -> F:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        # functools.wraps without importing functools (success-path cost).
        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            try:
                setattr(wrapper, name, getattr(func, name))
            except AttributeError:
                pass
        wrapper.__dict__.update(getattr(func, "__dict__", {}))
        wrapper.__wrapped__ = func  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    def __enter__(self) -> _ReportErrors:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Returning None re-raises: the host keeps its exception and exit status.
        if exc is not None and _hub.is_error(exc):
            _hub.capture(exc, exiting=True, fingerprint=self.fingerprint)


if TYPE_CHECKING:
    from typing import overload
else:

    def overload(func: Any) -> Any:  # typing.overload without importing typing
        return func


@overload
def report_errors(func: F) -> F: ...
@overload
def report_errors(*, fingerprint: Sequence[str] | None = None) -> _ReportErrors: ...  # noqa: F811


def report_errors(  # noqa: F811
    func: F | None = None, *, fingerprint: Sequence[str] | None = None
) -> F | _ReportErrors:
    """``@report_errors`` on a CLI's ``main``, or ``with report_errors():``.

    The error is reported and re-raised unchanged, so the program's own
    handling and exit status stay as they were. ``SystemExit(0)`` and
    ``KeyboardInterrupt`` are not errors (unless configured).
    """
    if func is not None:
        return _ReportErrors()(func)
    return _ReportErrors(fingerprint)
