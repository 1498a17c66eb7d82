"""Test helpers shared by the suites (imported as tests.support through pytest's pythonpath)."""
