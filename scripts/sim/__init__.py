"""A deterministic simulation of errmesh's pure core at fleet scale.

Why: every other test runs a handful of relays on loopback; what the design
(CRDT aggregate, terms, marker-idempotent issues, anti-entropy) is for is
thousands of machines, partitions that heal, leaders that die or stall.
This package drives the real ``mesh`` modules of many relays in one process,
on a simulated network and clock, from one seed, so a run is a history that
replays byte for byte and a checker can judge (``docs/RELIABILITY.md``,
"Simulation at fleet scale").

``python -m scripts.sim`` (from the repository root) is the command line;
``Simulation(SimConfig(...)).run()`` and ``check`` are what the tests use.
Only ``random.Random`` streams named by the seed (``scheduler.stream``) draw
anything; nothing reads a clock but ``Simulation.wall_seconds``.
"""
