"""Fixtures for the log tests."""

import pytest
from log_helpers import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def log_dir(tmp_path):
    return str(tmp_path / "my.topic_name-x-0")
