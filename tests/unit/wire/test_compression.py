import gzip
import os
import struct
import types
import zlib

import cramjam
import kafka.codec
import lz4.frame
import pytest
import zstandard

from kbroker.wire import compression
from kbroker.wire.compression import (
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    XERIAL_MAGIC,
    ZSTD,
    CompressionError,
    UnsupportedCodec,
    compress,
    decompress,
)
from kbroker.wire.records import CorruptBatch

CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
COMPRESSED = [GZIP, SNAPPY, LZ4, ZSTD]

TEXT = b"".join(b'{"id": %d, "user": "user%d", "ok": true}\n' % (i, i % 97) for i in range(5000))
PAYLOADS = {
    "empty": b"",
    "one byte": b"x",
    "small": b"hello kafka " * 10,
    "text over several blocks": TEXT,  # ~200 KiB: several snappy and lz4 blocks
    "random": os.urandom(100_000),
}


@pytest.fixture
def kafka_python_snappy(monkeypatch):
    """kafka-python wants python-snappy; give it cramjam's raw snappy instead."""
    shim = types.SimpleNamespace(
        compress=lambda b: bytes(cramjam.snappy.compress_raw(b)),
        decompress=lambda b: bytes(cramjam.snappy.decompress_raw(b)),
    )
    monkeypatch.setattr(kafka.codec, "snappy", shim)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", list(PAYLOADS))
def test_round_trip(codec, name):
    data = PAYLOADS[name]
    packed = compress(codec, data)
    assert isinstance(packed, bytes)
    assert decompress(codec, packed) == data
    # any bytes-like in, bytes out
    assert decompress(codec, memoryview(bytearray(packed))) == data
    assert compress(codec, bytearray(data)) == packed  # deterministic (gzip: mtime 0)


@pytest.mark.parametrize("codec", COMPRESSED)
def test_compresses(codec):
    assert len(compress(codec, TEXT)) < len(TEXT) // 4


@pytest.mark.parametrize("codec", [GZIP, LZ4, ZSTD])
def test_levels(codec):
    low, high = {GZIP: (1, 9), LZ4: (0, 12), ZSTD: (1, 19)}[codec]
    for level in (low, high):
        assert decompress(codec, compress(codec, TEXT, level=level)) == TEXT


@pytest.mark.parametrize("codec", [5, 6, 7, -1, 100])
def test_unknown_codec(codec):
    with pytest.raises(UnsupportedCodec, match="unknown compression type"):
        decompress(codec, b"abc")
    with pytest.raises(UnsupportedCodec):
        compress(codec, b"abc")
    assert issubclass(UnsupportedCodec, CorruptBatch)


@pytest.mark.parametrize("codec", COMPRESSED)
def test_corrupt_data(codec):
    packed = compress(codec, TEXT)
    for bad in (packed[: len(packed) // 2], packed[:5], b"not compressed at all, really", b""):
        if codec == SNAPPY and bad == b"":
            continue  # raw snappy of nothing is invalid, but see test below
        with pytest.raises(CompressionError):
            decompress(codec, bad)
    assert issubclass(CompressionError, CorruptBatch)


def test_corrupt_empty_snappy():
    with pytest.raises(CompressionError):
        decompress(SNAPPY, b"")


def test_flipped_bits_never_escape_as_other_errors():
    for codec in COMPRESSED:
        packed = bytearray(compress(codec, TEXT[:5000]))
        for i in range(0, len(packed), max(1, len(packed) // 40)):
            bad = bytearray(packed)
            bad[i] ^= 0xFF
            try:
                decompress(codec, bytes(bad))
            except CompressionError:
                pass


# --- gzip ---------------------------------------------------------------------------


def test_gzip_is_a_gzip_member():
    packed = compress(GZIP, TEXT)
    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed) == TEXT
    assert kafka.codec.gzip_decode(packed) == TEXT
    assert decompress(GZIP, kafka.codec.gzip_encode(TEXT)) == TEXT


def test_gzip_concatenated_members():
    packed = gzip.compress(b"first ") + gzip.compress(b"second")
    assert decompress(GZIP, packed) == b"first second"


# --- snappy -------------------------------------------------------------------------


def _xerial_blocks(packed):
    assert packed[:8] == XERIAL_MAGIC
    assert struct.unpack(">ii", packed[8:16]) == (1, 1)
    pos, blocks = 16, []
    while pos < len(packed):
        (n,) = struct.unpack_from(">i", packed, pos)
        blocks.append(packed[pos + 4 : pos + 4 + n])
        pos += 4 + n
    assert pos == len(packed)
    return blocks


def test_snappy_writes_xerial_framing_like_java():
    packed = compress(SNAPPY, TEXT)
    blocks = _xerial_blocks(packed)
    # SnappyOutputStream's default block size: 32 KiB of input per block
    assert len(blocks) == -(-len(TEXT) // (32 * 1024))
    raw = [bytes(cramjam.snappy.decompress_raw(b)) for b in blocks]
    assert all(len(r) == 32 * 1024 for r in raw[:-1])
    assert b"".join(raw) == TEXT
    assert compress(SNAPPY, b"") == XERIAL_MAGIC + b"\x00\x00\x00\x01\x00\x00\x00\x01"


def test_snappy_reads_raw_blocks_as_librdkafka_may_send():
    raw = bytes(cramjam.snappy.compress_raw(TEXT))
    assert decompress(SNAPPY, raw) == TEXT


def test_snappy_reads_concatenated_xerial_streams():
    packed = compress(SNAPPY, b"first ") + compress(SNAPPY, b"second")
    assert decompress(SNAPPY, packed) == b"first second"


def test_snappy_ignores_version_fields():
    # some producers write the version ints little-endian; readers ignore them
    packed = bytearray(compress(SNAPPY, TEXT))
    packed[8:16] = struct.pack("<ii", 1, 1)
    assert decompress(SNAPPY, bytes(packed)) == TEXT


def test_snappy_truncated_xerial():
    packed = compress(SNAPPY, TEXT)
    for cut in (10, 18, 21, len(packed) - 1):
        with pytest.raises(CompressionError):
            decompress(SNAPPY, packed[:cut])


def test_snappy_interop_with_kafka_python(kafka_python_snappy):
    assert kafka.codec.snappy_decode(compress(SNAPPY, TEXT)) == TEXT
    assert decompress(SNAPPY, kafka.codec.snappy_encode(TEXT)) == TEXT
    assert decompress(SNAPPY, kafka.codec.snappy_encode(TEXT, xerial_compatible=False)) == TEXT
    # byte for byte what kafka-python (a port of xerial's writer) produces
    assert compress(SNAPPY, TEXT) == kafka.codec.snappy_encode(TEXT)


# --- lz4 ----------------------------------------------------------------------------


def test_lz4_frame_flags_match_kafka():
    packed = compress(LZ4, TEXT)
    assert packed[:4] == b"\x04\x22\x4d\x18"  # frame magic
    flg, bd = packed[4], packed[5]
    assert flg >> 6 == 0b01  # version
    assert flg & 0x20  # independent blocks: Kafka cannot read linked ones
    assert not flg & 0x10  # no block checksum
    assert not flg & 0x08  # no content size
    assert not flg & 0x04  # no content checksum
    assert (bd >> 4) & 0x7 == 4  # 64 KiB max block
    assert lz4.frame.decompress(packed) == TEXT
    assert kafka.codec.lz4_decode(packed) == TEXT


def test_lz4_reads_other_frames():
    for kwargs in (
        {},
        {"content_checksum": True, "store_size": True},
        {"block_size": lz4.frame.BLOCKSIZE_MAX4MB, "block_checksum": True},
    ):
        assert decompress(LZ4, lz4.frame.compress(TEXT, **kwargs)) == TEXT
    assert decompress(LZ4, kafka.codec.lz4_encode(TEXT)) == TEXT


# --- zstd ---------------------------------------------------------------------------


def test_zstd_without_content_size():
    packed = zstandard.ZstdCompressor(write_content_size=False).compress(TEXT)
    assert zstandard.get_frame_parameters(packed).content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert decompress(ZSTD, packed) == TEXT
    # as a streaming writer (zstd-jni's ZstdOutputStream) leaves it
    cctx = zstandard.ZstdCompressor()
    chunker = cctx.chunker(chunk_size=4096)
    streamed = b"".join(list(chunker.compress(TEXT)) + list(chunker.finish()))
    assert decompress(ZSTD, streamed) == TEXT


def test_zstd_concatenated_frames():
    packed = compress(ZSTD, b"first ") + compress(ZSTD, b"second")
    assert decompress(ZSTD, packed) == b"first second"


def test_zstd_interop_with_kafka_python():
    assert kafka.codec.zstd_decode(compress(ZSTD, TEXT)) == TEXT
    assert decompress(ZSTD, kafka.codec.zstd_encode(TEXT)) == TEXT


def test_names():
    assert compression.codec_name(ZSTD) == "zstd"
    assert compression.IDS["snappy"] == SNAPPY
    with pytest.raises(UnsupportedCodec):
        compression.codec_name(9)


def test_gzip_stdlib_agrees():
    assert zlib.decompress(compress(GZIP, TEXT), 31) == TEXT
