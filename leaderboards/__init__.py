"""Static leaderboard sites built from evalsuite run directories.

This package reads runs only through :mod:`evalsuite.rundir` and the record
types in :mod:`evalsuite.records` (enforced by tests/test_leaderboard_boundary.py),
so it can be split out or replaced without touching the evaluation core.
"""
