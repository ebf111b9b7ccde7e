"""The numbers both the pure core and the settings table default to, once each.

``node.settings`` (the one settings model, read on the dying process's
hand-over path) and the mesh modules that use these values without a
``Config`` (``Aggregate``, ``ElectionConfig``, ``AntiEntropyOptions``,
``RelayOptions``) take them from here, so a setting cannot default to one
number in the relay and another in a library call. Imports nothing.
"""

#: Seconds an open issue's counts are bundled before the leader updates it.
WINDOW = 900.0
#: Seconds a new signature settles before its issue is opened.
SETTLE = 5.0
#: Seconds between a candidate's heartbeats.
HEARTBEAT = 0.5
#: Seconds between a relay's digests (and whenever its peer set changes).
DIGEST_EVERY = 5.0
#: Digest entries per ``digest`` message (and the most states one answer sends).
DIGEST_BATCH = 512
#: Data messages a relay holds waiting to be merged before it drops new ones.
BACKLOG_MAX = 50_000
