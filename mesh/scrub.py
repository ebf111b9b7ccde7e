"""Secrets never leave the process: scrub every report before it is spooled.

Issues may be public and reports travel to every peer, so the reporting
process removes secrets before anything is written (DESIGN.md section 9).
Like sentry-python's ``scrubber.py`` this is on by default with a deny list;
unlike it, it also recognises secrets by their shape, because error messages
and log lines carry secrets in free text, not only in named fields.

Theory of operation
-------------------
:meth:`Scrubber.text` applies these rules in order, each replacing what it
finds with :data:`REDACTED`:

====================  ====================================================
configured values     ``ScrubRules.secret_values`` (e.g. the values of
                      secret-named environment variables), literally
extra patterns        ``ScrubRules.extra_patterns``: the whole match
PEM private keys      ``-----BEGIN ... PRIVATE KEY-----`` to its END line,
                      or to the end of the text when there is none; an END
                      line without its BEGIN takes the base64 before it
Slack webhooks        ``https://hooks.slack.com/services/[REDACTED]``
token shapes          GitHub (``ghp_`` ``gho_`` ``ghu_`` ``ghs_`` ``ghr_``
                      ``github_pat_``), GitLab, AWS access key ids, Slack
                      (``xox?-``, ``xapp-``), JWTs, Stripe, Google, npm,
                      PyPI, OpenAI/Anthropic-style ``sk-`` keys
AWS secret keys       40 base64 characters labelled ``aws_secret_access_key``
URL passwords         ``scheme://user:[REDACTED]@host``
bearer tokens         ``Bearer [REDACTED]``
secret-named pairs    ``key=v``, ``key: v``, ``"key": "v"``, ``'key': 'v'``,
                      ``--key v`` where :func:`is_secret_name` (or
                      ``ScrubRules.extra_keys``) says the key is secret;
                      an auth scheme before the value is kept
                      (``Authorization: Bearer [REDACTED]``)
home directory        ``ScrubRules.home`` becomes ``~``
====================  ====================================================

Configured values and extra patterns run first so that a known secret is
removed whole before a generic rule could take only part of it; they are
applied between existing ``[REDACTED]`` markers, never across them.
The shapes and their hints live in ``mesh/scrub_patterns.py``, the
judgement of names in ``mesh/secret_names.py``; this module is the engine
that applies them and its configuration.

Contract
--------
* **Never raises.** An internal failure redacts the whole string (or every
  scrubbed field of a report): failing closed, never returning input that
  was not scrubbed.
* **Idempotent.** ``text`` repeats its rules until the text stops changing
  (the second pass normally changes nothing); if it has not settled after a
  few passes the whole string is redacted, which is itself a fixed point.
  So ``text(text(x)) == text(x)`` holds by construction.
* **Linear-ish time.** Patterns start only at word boundaries, repetition is
  bounded where a scan could restart often, and key names are captured
  "atomically" (lookahead plus back-reference) so they never backtrack.
* **Ordinary text survives.** Rules key on shapes and names, not on entropy:
  ``password incorrect for user bob`` and ``token count: 5`` are unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from mesh.errors import LocalError
from mesh.scrub_pass import any_of
from mesh.scrub_patterns import (
    _PAIR,
    _PEM_BEGIN,
    _PEM_BODY_FIRST_LINE,
    _PEM_BODY_LINE,
    _PEM_END,
    _REST_OF_LINE,
    _TOKEN_HINT_LITERALS,
    _VALUE,
    PAIR_HINTS,
    REDACTED,
    SHAPE_RULES,
    _quoted,
)
from mesh.secret_names import _compact, _name_parts, is_secret_name, secret_env_values

TYPE_CHECKING = False
if TYPE_CHECKING:  # the hand-over path imports this module: no typing, no dataclasses
    from typing import Final

    from mesh.report import Frame, Report

    #: How a frame's source context is scrubbed: ``Scrubber.source`` or redacted whole.
    SourceScrub = Callable[
        [Sequence[str], str, Sequence[str]], tuple[tuple[str, ...], str, tuple[str, ...]]
    ]

__all__ = [
    "REDACTED",
    "ScrubRules",
    "Scrubber",
    "is_secret_name",
    "process_scrubber",
    "secret_env_values",
]


_MAX_PASSES: Final = 4


# --------------------------------------------------------------------------
# Configuration and the scrubber
# --------------------------------------------------------------------------


class ScrubRules:
    """What to scrub besides the built-in rules; built once from configuration.

    ``extra_patterns`` are regular expressions whose whole match is redacted;
    ``extra_keys`` are more secret key names (matched like built-in names,
    ignoring case and separators); ``secret_values`` are redacted literally
    wherever they appear (see :func:`secret_env_values`); ``home`` is the
    user's home directory, shown as ``~``.

    A frozen value like a dataclass, written out because a failing process
    on its way to a local relay must not pay for importing ``dataclasses``
    (node/handover.py).
    """

    __slots__ = ("extra_keys", "extra_patterns", "home", "secret_values")

    extra_patterns: tuple[str, ...]
    extra_keys: tuple[str, ...]
    secret_values: tuple[str, ...]
    home: str | None

    def __init__(
        self,
        *,
        extra_patterns: tuple[str, ...] = (),
        extra_keys: tuple[str, ...] = (),
        secret_values: tuple[str, ...] = (),
        home: str | None = None,
    ) -> None:
        for name, value in (
            ("extra_patterns", extra_patterns),
            ("extra_keys", extra_keys),
            ("secret_values", secret_values),
            ("home", home),
        ):
            object.__setattr__(self, name, value)

    def _astuple(self) -> tuple[object, ...]:
        return (self.extra_patterns, self.extra_keys, self.secret_values, self.home)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ScrubRules is frozen: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScrubRules):
            return NotImplemented
        return self._astuple() == other._astuple()

    def __hash__(self) -> int:
        return hash(self._astuple())

    def __repr__(self) -> str:
        return (
            f"ScrubRules(extra_patterns={self.extra_patterns!r}, extra_keys={self.extra_keys!r}, "
            f"secret_values=({len(self.secret_values)} values), home={self.home!r})"
        )


_DEFAULT_RULES: Final = ScrubRules()


def _home_pattern(home: str | None) -> re.Pattern[str] | None:
    if home is None:
        return None
    home = home.strip().rstrip("/\\")
    if len(home) < 2 or not any(sep in home for sep in "/\\"):
        return None
    windows = "\\" in home or home[1:2] == ":"
    return re.compile(
        rf"(?<![\w.\-~]){re.escape(home)}(?![\w.\-])", re.IGNORECASE if windows else 0
    )


class Scrubber:
    """Removes secrets from text, argv, key/value pairs and whole reports.

    Pure: compiles its rules once in ``__init__``, does no IO. Raises
    :class:`~mesh.errors.LocalError` naming the pattern when an extra pattern
    is not a valid regular expression; its methods never raise.
    """

    def __init__(self, rules: ScrubRules = _DEFAULT_RULES) -> None:
        self.rules = rules
        compiled: list[re.Pattern[str]] = []
        for pattern in rules.extra_patterns:
            try:
                compiled.append(re.compile(pattern))
            except (re.error, TypeError, ValueError) as exc:
                raise LocalError(f"invalid scrub pattern {pattern!r}: {exc}") from exc
        self._extra = tuple(compiled)
        values = {v for raw in rules.secret_values for v in (raw, raw.strip()) if v.strip()}
        self._values = (
            re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
            if values
            else None
        )
        self._extra_keys = frozenset(k for k in map(_compact, rules.extra_keys) if k)
        # Every part of an extra key is a hint: its compact form may be
        # written with separators or in camelCase in the text.
        extra_hints = {part for key in rules.extra_keys for part in _name_parts(key)}
        hints = PAIR_HINTS + tuple(sorted(extra_hints - set(PAIR_HINTS)))
        self._pair_hint = re.compile("|".join(re.escape(h) for h in hints))
        self._home = _home_pattern(rules.home)
        self._home_hint = (rules.home or "").strip().rstrip("/\\").lower()
        # One case-insensitive search for the hint of every rule: a text it
        # does not find is returned as it is. Extra patterns are arbitrary,
        # so with any configured every text takes the full path.
        any_hints = {
            *(h.lower() for h in _TOKEN_HINT_LITERALS),
            "private key", "hooks.slack.com/", "secret", "://", "bearer",
            *PAIR_HINTS, *extra_hints,
            *(v.lower() for v in values),
        }  # fmt: skip
        if self._home_hint:
            any_hints.add(self._home_hint)
        self._any_hint = None if self._extra else any_of(sorted(any_hints))

    # -- the predicate shared by text, argv and pairs -----------------------

    def is_secret_key(self, name: str) -> bool:
        """Whether ``name`` is secret by :func:`is_secret_name` or ``extra_keys``."""
        if is_secret_name(name):
            return True
        if not self._extra_keys:
            return False
        last = re.split(r"[.:/]", name)[-1]
        return _compact(name) in self._extra_keys or _compact(last) in self._extra_keys

    # -- text --------------------------------------------------------------

    def text(self, s: str) -> str:
        """``s`` without secrets. Idempotent; never raises (fails closed)."""
        try:
            if self._any_hint is not None and not self._any_hint.search(s.lower()):
                return s  # no rule could match: most log and source lines
            current = s
            for _ in range(_MAX_PASSES):
                following = self._once(current)
                if following == current:
                    return current
                current = following
            return REDACTED  # did not settle: redact it all (a fixed point)
        except Exception:
            return REDACTED

    def _once(self, s: str) -> str:
        s = self._between_markers(s)
        for _, rule in SHAPE_RULES:
            s = rule(s)
        low = s.lower()
        if self._pair_hint.search(low):
            s = self._pairs_in_text(s)
        if self._home is not None and self._home_hint in low:
            s = self._home.sub("~", s)
        return s

    def _between_markers(self, s: str) -> str:
        """Configured values and extra patterns, never across a ``[REDACTED]``."""
        if self._values is None and not self._extra:
            return s
        pieces = s.split(REDACTED)
        for i, piece in enumerate(pieces):
            if self._values is not None:
                piece = self._values.sub(REDACTED, piece)
            for pattern in self._extra:
                piece = pattern.sub(lambda m: REDACTED if m.group(0) else "", piece)
            pieces[i] = piece
        return REDACTED.join(pieces)

    def _pairs_in_text(self, s: str) -> str:
        out: list[str] = []
        last = 0
        for match in _PAIR.finditer(s):
            if match.start() < last:
                continue  # inside a value redacted already
            key = match.group("key") or match.group("flag") or ""
            if not self._key_is_secret(key, s[match.start() - 1 : match.start()]):
                continue
            rule = _REST_OF_LINE if "cookie" in key.lower() else _VALUE
            value = rule.match(s, match.end())
            if value is None:
                continue
            out.append(s[last : match.end()])
            out.append(value.group("scheme") or "")
            out.append(_quoted(value.group("value")))
            last = value.end()
        if not out:
            return s
        out.append(s[last:])
        return "".join(out)

    def _key_is_secret(self, key: str, before: str) -> bool:
        if self.is_secret_key(key):
            return True
        # "\npassword=..." inside an escaped string: the key really starts after "n".
        return before == "\\" and key[:1] in "ntr" and self.is_secret_key(key[1:])

    # -- structured values -------------------------------------------------

    def lines(self, seq: Sequence[str]) -> tuple[str, ...]:
        """Each line scrubbed; a private key split across lines is redacted whole.

        Lines after a BEGIN line without its END are redacted up to the END
        line (or to the last line). A tail cut inside a key (log rings drop
        their oldest lines) is handled too: base64 lines before an END line
        without a BEGIN, and a leading run of base64 lines starting with a
        long one, are redacted. Never raises.
        """
        try:
            out: list[str] = []
            in_key = False  # after a BEGIN: redact until an END line, however long
            cut_body = bool(seq) and _PEM_BODY_FIRST_LINE.fullmatch(seq[0]) is not None
            for line in seq:
                if cut_body and _PEM_BODY_LINE.fullmatch(line):
                    out.append(REDACTED)  # the tail starts inside a key
                    continue
                cut_body = False
                if in_key:
                    end = _PEM_END.search(line)
                    if end is None:
                        out.append(REDACTED)
                        continue
                    in_key = False
                    out.append(REDACTED + self.text(line[end.end() :]))
                    continue
                begins = list(_PEM_BEGIN.finditer(line))
                if begins and _PEM_END.search(line, begins[-1].end()) is None:
                    in_key = True
                elif _PEM_END.search(line) and not begins:
                    j = len(out)
                    while j > 0 and _PEM_BODY_LINE.fullmatch(out[j - 1]):
                        j -= 1
                        out[j] = REDACTED
                out.append(self.text(line))
            return tuple(out)
        except Exception:
            return tuple(REDACTED for _ in seq)

    def source(
        self, pre: Sequence[str], line: str, post: Sequence[str]
    ) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
        """A frame's source context scrubbed as one run of lines (:meth:`lines`).

        One run, so a private key pasted into the source is redacted whole
        whichever of its lines the window starts or ends in. Never raises.
        """
        window = self.lines((*pre, line, *post))
        return window[: len(pre)], window[len(pre)], window[len(pre) + 1 :]

    def argv(self, seq: Sequence[str]) -> tuple[str, ...]:
        """A command line without secrets.

        Each argument is scrubbed as text (``--api-key=X``, ``user:pass@``
        URLs, tokens); the argument after a long flag whose name is secret
        (``--token X``, ``-password X``) is redacted whatever it looks like.
        Short flags (``-p X``) are ambiguous and left alone. Never raises.
        """
        try:
            out: list[str] = []
            redact_next = False
            for arg in seq:
                if redact_next:
                    out.append(REDACTED)
                    redact_next = False
                    continue
                flag = re.fullmatch(r"--?([A-Za-z][\w.\-]+)", arg)
                redact_next = flag is not None and self.is_secret_key(flag.group(1))
                out.append(self.text(arg))
            return tuple(out)
        except Exception:
            return tuple(REDACTED for _ in seq)

    def pairs(self, items: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """Key/value pairs (facts, headers): the value of a secret key is redacted,
        any other value is scrubbed as text; keys are kept. Never raises."""
        try:
            return tuple(
                (key, REDACTED if self.is_secret_key(key) else self.text(value))
                for key, value in items
            )
        except Exception:
            return ()

    def report(self, r: Report) -> Report:
        """A copy of ``r`` with every free-text field scrubbed.

        One pass over all of its text first (mesh/scrub_pass.py) finds the
        few fields a rule could change; only those are scrubbed. Without
        that pass (extra patterns configured) every field is, one by one
        (:meth:`_report_by_field`); both give the same result.

        Scrubs the message, the causes' messages, the frames' source lines
        and file names (a group's leaves' too), the log tail, argv, facts, tags, contexts,
        environment and release. Types, module and
        function names, host facts and the fingerprint are kept (the
        signature relies on them). Never raises: on an internal failure the
        scrubbed fields are all redacted.
        """
        from mesh.scrub_pass import scrub_report

        try:
            scrubbed = scrub_report(self, r)
        except Exception:  # the field-by-field path fails closed on its own
            scrubbed = None
        return self._report_by_field(r) if scrubbed is None else scrubbed

    def _report_by_field(self, r: Report) -> Report:
        """:meth:`report`, each field scrubbed by its method (the reference)."""
        import dataclasses  # loaded already wherever a Report exists

        try:
            return r.replace(
                message=self.text(r.message),
                causes=tuple(
                    dataclasses.replace(c, message=self.text(c.message)) for c in r.causes
                ),
                frames=_frames(r.frames, self.text, self.source),
                log_tail=self.lines(r.log_tail),
                argv=self.argv(r.argv),
                facts=self.pairs(r.facts),
                tags=self.pairs(r.tags),
                contexts=self.pairs(r.contexts),
                environment=self.text(r.environment),
                release=self.text(r.release),
                stdout_tail=self.lines(r.stdout_tail),
                leaves=tuple(
                    dataclasses.replace(
                        leaf,
                        message=self.text(leaf.message),
                        frames=_frames(leaf.frames, self.text, self.source),
                    )
                    for leaf in r.leaves
                ),
            )
        except Exception:
            return r.replace(
                message=REDACTED,
                causes=tuple(dataclasses.replace(c, message=REDACTED) for c in r.causes),
                frames=_frames(r.frames, _redacted),
                log_tail=tuple(REDACTED for _ in r.log_tail),
                argv=tuple(REDACTED for _ in r.argv),
                facts=tuple((k, REDACTED) for k, _ in r.facts),
                tags=tuple((k, REDACTED) for k, _ in r.tags),
                contexts=tuple((k, REDACTED) for k, _ in r.contexts),
                environment=REDACTED if r.environment else "",
                release=REDACTED if r.release else "",
                stdout_tail=tuple(REDACTED for _ in r.stdout_tail),
                leaves=tuple(
                    dataclasses.replace(
                        leaf, message=REDACTED, frames=_frames(leaf.frames, _redacted)
                    )
                    for leaf in r.leaves
                ),
            )


def _redacted(_: str) -> str:
    return REDACTED


def _redacted_source(
    pre: Sequence[str], line: str, post: Sequence[str]
) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    return tuple(REDACTED for _ in pre), REDACTED, tuple(REDACTED for _ in post)


def _frames(
    frames: Sequence[Frame], text: Callable[[str], str], source: SourceScrub = _redacted_source
) -> tuple[Frame, ...]:
    """Frames with their source lines and file names passed through ``text``,
    their source context (when they have one) through ``source``."""
    import dataclasses

    out = []
    for f in frames:
        if f.context_line or f.pre_context or f.post_context:
            pre, line, post = source(f.pre_context, f.context_line, f.post_context)
            f = dataclasses.replace(
                f,
                line=text(f.line),
                filename=text(f.filename),
                pre_context=pre,
                context_line=line,
                post_context=post,
            )
        else:
            f = dataclasses.replace(f, line=text(f.line), filename=text(f.filename))
        out.append(f)
    return tuple(out)


def process_scrubber(
    *,
    extra_patterns: tuple[str, ...] = (),
    extra_keys: tuple[str, ...] = (),
    token: str | None = None,
    environ: Mapping[str, str],
) -> Scrubber:
    """The scrubber of a reporting process: configured rules, plus the values of
    its secret-named environment variables, its GitHub token and its home.

    Both error paths (node/pipeline.py, node/handover.py) build theirs here,
    so they cannot drift apart. Raises ``LocalError`` for a bad pattern.
    """
    return Scrubber(
        ScrubRules(
            extra_patterns=extra_patterns,
            extra_keys=extra_keys,
            secret_values=secret_env_values(environ) + ((token,) if token else ()),
            home=environ.get("HOME") or os.path.expanduser("~"),
        )
    )
