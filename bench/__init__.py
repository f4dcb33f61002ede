"""Benchmarks of GuestGate against the bare homeserver calls each step needs (DESIGN.md,
"Performance targets"). Run with ``make bench``; never part of the test suite."""
