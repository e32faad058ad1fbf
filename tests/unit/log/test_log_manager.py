import os

from log_helpers import build_batch

from kbroker.log import LogConfig, LogManager, parse_partition_dir
from kbroker.log.checkpoint import read_offsets, write_offsets
from kbroker.log.manager import CLEAN_SHUTDOWN_FILE


def test_parse_partition_dir():
    assert parse_partition_dir("orders-0") == ("orders", 0)
    assert parse_partition_dir("my.topic_with-dashes-12") == ("my.topic_with-dashes", 12)
    assert parse_partition_dir("__consumer_offsets-49") == ("__consumer_offsets", 49)
    assert parse_partition_dir("orders") is None
    assert parse_partition_dir("orders-x") is None
    assert parse_partition_dir("-3") is None


def test_checkpoint_file_format(tmp_path):
    path = str(tmp_path / "replication-offset-checkpoint")
    write_offsets(path, {("b.t", 1): 7, ("a-t", 0): 42})
    assert open(path).read() == "0\n2\na-t 0 42\nb.t 1 7\n"
    assert read_offsets(path) == {("a-t", 0): 42, ("b.t", 1): 7}
    assert read_offsets(str(tmp_path / "missing")) == {}
    assert not os.path.exists(path + ".tmp")


def test_create_shutdown_and_reload(tmp_path):
    data_dir = str(tmp_path / "data")
    manager = LogManager(data_dir, LogConfig(segment_bytes=2000))
    assert manager.startup() == []
    for tp in (("a.b-c", 0), ("a.b-c", 1), ("__consumer_offsets", 3)):
        plog = manager.get_or_create(*tp)
        for _ in range(3):
            plog.append(build_batch(4, value_size=30))
        plog.high_watermark = plog.log_end_offset - 4
    assert os.path.isdir(os.path.join(data_dir, "a.b-c-1"))
    manager.checkpoint()
    manager.shutdown()
    manager.shutdown()  # idempotent: must not overwrite the checkpoints with nothing
    assert os.path.exists(os.path.join(data_dir, CLEAN_SHUTDOWN_FILE))
    assert open(os.path.join(data_dir, "recovery-point-offset-checkpoint")).read() == (
        "0\n3\n__consumer_offsets 3 12\na.b-c 0 12\na.b-c 1 12\n"
    )
    assert open(os.path.join(data_dir, "replication-offset-checkpoint")).read() == (
        "0\n3\n__consumer_offsets 3 8\na.b-c 0 8\na.b-c 1 8\n"
    )

    reloaded = LogManager(data_dir, LogConfig(segment_bytes=2000))
    assert reloaded.startup() == [("__consumer_offsets", 3), ("a.b-c", 0), ("a.b-c", 1)]
    assert reloaded.recovered == []
    assert not os.path.exists(os.path.join(data_dir, CLEAN_SHUTDOWN_FILE))
    plog = reloaded.get("a.b-c", 1)
    assert (plog.log_end_offset, plog.high_watermark, plog.recovery_point) == (12, 8, 12)
    assert plog.append(build_batch(1)).base_offset == 12
    reloaded.shutdown()


def test_unclean_shutdown_recovers_torn_tail(tmp_path):
    data_dir = str(tmp_path)
    manager = LogManager(data_dir)
    manager.startup()
    plog = manager.get_or_create("t", 0)
    plog.append(build_batch(3))
    manager.checkpoint()  # recovery point 0: nothing synced yet
    plog.append(build_batch(3))
    path = plog.active_segment.log_path
    size = plog.active_segment.size
    # kill -9: no shutdown; the last write was torn
    with open(path, "r+b") as f:
        f.truncate(size - 10)
    restarted = LogManager(data_dir)
    assert restarted.startup() == [("t", 0)]
    assert restarted.recovered == [("t", 0)]
    recovered = restarted.get("t", 0)
    assert recovered.log_end_offset == 3
    assert recovered.append(build_batch(2)).base_offset == 3
    assert read_offsets(os.path.join(data_dir, "recovery-point-offset-checkpoint")) == {("t", 0): 3}
    restarted.shutdown()


def test_delete_and_stale_dirs(tmp_path):
    data_dir = str(tmp_path)
    os.makedirs(os.path.join(data_dir, "gone-0.0123456789abcdef0123456789abcdef-delete"))
    os.makedirs(os.path.join(data_dir, "not a partition"))
    manager = LogManager(data_dir)
    assert manager.startup() == []
    assert not os.path.exists(
        os.path.join(data_dir, "gone-0.0123456789abcdef0123456789abcdef-delete")
    )
    manager.get_or_create("x", 0).append(build_batch(1))
    manager.get_or_create("x", 1)
    assert manager.delete_topic("x") == 2
    assert not os.path.exists(os.path.join(data_dir, "x-0"))
    assert manager.get("x", 0) is None


def test_multiple_log_dirs_and_topic_configs(tmp_path):
    dirs = [str(tmp_path / "d1"), str(tmp_path / "d2")]
    configs = {"small": LogConfig(segment_bytes=500)}
    manager = LogManager(dirs, config_for=lambda t: configs.get(t, LogConfig()))
    manager.startup()
    a = manager.get_or_create("small", 0)
    b = manager.get_or_create("small", 1)
    assert {os.path.dirname(a.directory), os.path.dirname(b.directory)} == set(dirs)
    assert a.config.segment_bytes == 500
    manager.shutdown()
    again = LogManager(dirs)
    assert again.startup() == [("small", 0), ("small", 1)]


def test_log_config_overrides():
    config = LogConfig().with_overrides(
        {"segment.bytes": "1024", "message.timestamp.type": "LogAppendTime", "x.y": "1"}
    )
    assert config.segment_bytes == 1024
    assert config.message_timestamp_type == "LogAppendTime"
    assert LogConfig().with_overrides({"flush.ms": str(2**63 - 1)}).flush_ms is None
