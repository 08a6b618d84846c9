"""Helpers the tests share: the train app run as a user runs it (helpers.app), reading run dirs
(helpers.rundirs), editing copies of real run dirs for the collector (helpers.run_edits), and a
reader for offline wandb run files (helpers.wandb_records). Fixtures live in tests/conftest.py."""
