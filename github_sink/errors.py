"""Every exception the ``github_sink`` package raises.

::

    SinkError                 an action could not be carried out
    ├── SinkUnavailable       transient: retry later (outage, lock, full disk)
    └── SinkRejected          permanent: fix the setting named in the message

The leader keeps an action whose sink raised ``SinkUnavailable`` for the next
round; ``SinkRejected`` is reported once and not retried.
"""

from __future__ import annotations

__all__ = ["SinkError", "SinkRejected", "SinkUnavailable"]


class SinkError(Exception):
    """Base of every sink exception."""


class SinkUnavailable(SinkError):
    """The sink failed for now; the same action may succeed later."""


class SinkRejected(SinkError):
    """The sink refused the action for good (bad token, missing repository...)."""
