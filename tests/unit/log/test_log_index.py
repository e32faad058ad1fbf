import os

import pytest

from kbroker.log.errors import CorruptIndex
from kbroker.log.index import OffsetIndex, TimeIndex


def test_offset_index_append_lookup_and_reload(tmp_path):
    path = str(tmp_path / "00000000000000000100.index")
    index = OffsetIndex(path, 100)
    assert index.lookup(150) == (100, 0)
    index.append(110, 4100)
    index.append(120, 8300)
    index.append(135, 12500)
    assert index.lookup(99) == (100, 0)
    assert index.lookup(110) == (110, 4100)
    assert index.lookup(119) == (110, 4100)
    assert index.lookup(125) == (120, 8300)
    assert index.lookup(10_000) == (135, 12500)
    index.close()
    data = open(path, "rb").read()
    assert data[:8] == (10).to_bytes(4, "big") + (4100).to_bytes(4, "big")
    assert len(data) == 24
    loaded = OffsetIndex.load(path, 100, log_size=20000)
    assert loaded.entries() == [(110, 4100), (120, 8300), (135, 12500)]
    assert loaded.last_offset == 135


def test_offset_index_rejects_non_increasing(tmp_path):
    index = OffsetIndex(str(tmp_path / "0.index"), 0)
    index.append(5, 100)
    with pytest.raises(ValueError):
        index.append(5, 200)


def test_offset_index_truncate(tmp_path):
    path = str(tmp_path / "0.index")
    index = OffsetIndex(path, 0)
    for i in range(1, 6):
        index.append(i * 10, i * 1000)
    index.flush()  # entries reach the file in blocks, and at flush or close
    assert os.path.getsize(path) == 40
    index.truncate_to(30)
    assert index.entries() == [(10, 1000), (20, 2000)]
    assert os.path.getsize(path) == 16
    index.append(25, 2500)
    index.append(27, 2700)
    index.truncate_to(27)  # drops an entry not yet written
    index.close()
    assert OffsetIndex.load(path, 0).entries() == [(10, 1000), (20, 2000), (25, 2500)]


def test_index_entries_are_written_in_blocks_and_at_close(tmp_path):
    # a crash loses at most the last block: what is on disk is always a valid index
    path = str(tmp_path / "0.index")
    index = OffsetIndex(path, 0)
    index.append(1, 100)
    assert not os.path.exists(path) or os.path.getsize(path) == 0
    for i in range(2, 1000):
        index.append(i, i * 100)
    on_disk = os.path.getsize(path)
    assert 0 < on_disk < 999 * 8 and on_disk % 8 == 0
    assert OffsetIndex.load(path, 0).entries() == index.entries()[: on_disk // 8]
    index.close()
    assert OffsetIndex.load(path, 0).entries() == index.entries()


@pytest.mark.parametrize(
    "data",
    [
        b"\x00" * 7,  # not a multiple of the entry size
        (5).to_bytes(4, "big") + (10).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(4),
    ],
)
def test_offset_index_sanity_check(tmp_path, data):
    path = tmp_path / "0.index"
    path.write_bytes(data)
    with pytest.raises(CorruptIndex):
        OffsetIndex.load(str(path), 0)


def test_offset_index_position_past_log_end(tmp_path):
    path = str(tmp_path / "0.index")
    index = OffsetIndex(path, 0)
    index.append(3, 5000)
    index.close()
    with pytest.raises(CorruptIndex):
        OffsetIndex.load(path, 0, log_size=4000)


def test_time_index(tmp_path):
    path = str(tmp_path / "00000000000000000050.timeindex")
    index = TimeIndex(path, 50)
    assert index.lookup(5) == (-1, 50)
    assert index.maybe_append(1000, 55)
    assert not index.maybe_append(1000, 56)  # not above the last timestamp
    assert not index.maybe_append(900, 57)
    assert index.maybe_append(2000, 60)
    assert index.maybe_append(3000, 70)
    assert index.lookup(999) == (-1, 50)
    assert index.lookup(1500) == (1000, 55)
    assert index.lookup(3000) == (3000, 70)
    assert index.last_entry == (3000, 70)
    index.close()
    data = open(path, "rb").read()
    assert len(data) == 36
    assert data[:12] == (1000).to_bytes(8, "big") + (5).to_bytes(4, "big")
    loaded = TimeIndex.load(path, 50)
    assert loaded.entries() == [(1000, 55), (2000, 60), (3000, 70)]
    loaded.truncate_to(60)
    assert loaded.entries() == [(1000, 55)]
    assert os.path.getsize(path) == 12


def test_time_index_sanity_check(tmp_path):
    path = tmp_path / "0.timeindex"
    entry = lambda ts, off: ts.to_bytes(8, "big") + off.to_bytes(4, "big")  # noqa: E731
    path.write_bytes(entry(2000, 1) + entry(1000, 2))
    with pytest.raises(CorruptIndex):
        TimeIndex.load(str(path), 0)
    path.write_bytes(entry(1000, 1)[:10])
    with pytest.raises(CorruptIndex):
        TimeIndex.load(str(path), 0)
