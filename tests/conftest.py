"""Fixtures shared by every test folder: a real ZooKeeper server (``zookeeper``)."""

from zk_fixture import zookeeper  # noqa: F401  (a session fixture, started on first use)
