"""A real broker process for the compatibility tests.

Every test here talks to ``python -m kbroker serve`` started as a subprocess on
127.0.0.1 and a free port, with its data in a temporary directory. The broker's
stdout and stderr go to files beside the data directory; when a test fails, the tail of
the stderr of every broker it used is attached to the report.
"""

from __future__ import annotations

import pytest
from compat_broker import _LIVE, Broker, _finish

# compat_*.py live beside this file; importing this conftest ("prepend" import mode,
# no __init__.py) puts this folder on sys.path for the tests in the sub-folders.


@pytest.fixture
def broker_factory(tmp_path):
    """Start brokers: ``broker_factory(settings={...})``; all are stopped at teardown."""
    brokers: list[Broker] = []

    def make(settings: dict[str, object] | None = None, start: bool = True) -> Broker:
        broker = Broker(tmp_path / f"broker{len(brokers)}", settings)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    _finish(brokers)


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A fresh broker with default settings, for one test."""
    return broker_factory()


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory) -> Broker:
    """One broker shared by a module's tests, each test on its own topics.

    ``num.partitions=3``: the round-trip topics are auto-created by the producers.
    """
    broker = Broker(tmp_path_factory.mktemp("module-broker"), {"num.partitions": 3})
    broker.start()
    yield broker
    _finish([broker])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for broker in list(_LIVE):
            report.sections.append(
                (f"broker {broker.bootstrap} stderr (tail)", broker.stderr_tail(80)))
