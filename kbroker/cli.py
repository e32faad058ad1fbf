"""The ``kbroker`` command: ``kbroker serve`` starts a complete single-node cluster."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import kbroker
from kbroker import admin_cli, groups_cli
from kbroker.config import BrokerConfig, ConfigError, parse_properties

log = logging.getLogger("kbroker")


def build_config(args: argparse.Namespace) -> BrokerConfig:
    """Kafka defaults, then ``--config`` file, then ``--set``, then the explicit flags."""
    values: dict[str, str] = {}
    if args.config:
        values.update(parse_properties(Path(args.config).read_text()))
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        values[key.strip()] = value.strip()
    if args.data_dir or not ({"log.dirs", "log.dir"} & values.keys()):
        values["log.dirs"] = args.data_dir or "./kbroker-data"
    if args.broker_id is not None:
        values["broker.id"] = str(args.broker_id)
    if args.zookeeper:
        values["zookeeper.connect"] = args.zookeeper
    if args.host or args.port is not None or "listeners" not in values:
        host = args.host or "127.0.0.1"
        port = 9092 if args.port is None else args.port
        values["listeners"] = f"PLAINTEXT://{host}:{port}"
    return BrokerConfig(values)


async def serve(config: BrokerConfig) -> None:
    """Run a broker until SIGTERM or SIGINT, then shut down cleanly."""
    from kbroker.server.broker import Broker
    from kbroker.server.cleaner import run_log_cleaner
    from kbroker.server.listener import Listener
    from kbroker.server.maintenance import run_log_maintenance

    broker = Broker(config)
    listener = Listener(broker)
    host, port = await listener.start(*config.listener())
    if config.get("advertised.listeners") is None:
        broker.advertise(broker.node.host, port)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    maintenance = asyncio.create_task(run_log_maintenance(broker.logs, config))
    cleaner = asyncio.create_task(run_log_cleaner(broker.cleaner, config))
    broker.groups.start_timer()  # members loaded from __consumer_offsets expire on time
    broker.transactions.start_timer()  # loaded transactions time out on time
    log.info(
        "kbroker %s ready on %s:%d (data in %s)", kbroker.__version__, host, port, config.data_dir
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await broker.controlled_shutdown()
        maintenance.cancel()
        cleaner.cancel()
        await listener.stop()
        await broker.stop_replication()
        broker.close()
        log.info("stopped")


def _run(coro) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kbroker", description=kbroker.__doc__)
    parser.add_argument("--version", action="version", version=f"kbroker {kbroker.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="start a broker")
    serve_cmd.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve_cmd.add_argument("--port", type=int, help="port to listen on (default 9092)")
    serve_cmd.add_argument("--data-dir", help="log directory (default ./kbroker-data)")
    serve_cmd.add_argument("--config", help="a Kafka server.properties file")
    serve_cmd.add_argument("--broker-id", type=int, help="this broker's id (broker.id)")
    serve_cmd.add_argument(
        "--zookeeper",
        metavar="HOST:PORT[/CHROOT]",
        help="join the cluster kept in this ZooKeeper (zookeeper.connect)",
    )
    serve_cmd.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any Kafka broker property (repeatable)",
    )
    serve_cmd.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    groups_cli.add_parser(commands)
    admin_cli.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command in ("topics", "configs"):
        return admin_cli.run(args)
    if args.command == "groups":
        try:
            return groups_cli.run(args)
        except OSError as exc:
            parser.exit(2, f"kbroker groups: {exc}\n")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = build_config(args)
    except (ConfigError, OSError) as exc:
        parser.error(str(exc))
    _run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
