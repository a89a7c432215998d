"""
pytest glue: trial's mktemp() writes relative to the working directory, so
each test runs in its own temporary directory, as under trial.
"""

import pytest


@pytest.fixture(autouse=True)
def _inTemporaryDirectory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
