"""Record batch compression codecs, by Kafka's attribute id.

    0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd

The broker decompresses only where it must (principle 3), so these are used for
compaction, re-compression to a topic's ``compression.type`` and by tests. Output is
what the Java client writes, so every consumer reads it:

* gzip: an RFC 1952 member (stdlib ``zlib``, level 6 as Java's default). Reading
  accepts concatenated members, as ``java.util.zip.GZIPInputStream`` does.
* snappy: xerial's block framing (``b"\\x82SNAPPY\\x00"``, version and compatible
  version int32s, then ``[int32 length][raw snappy block]`` for each 32 KiB of input),
  as ``org.xerial.snappy.SnappyOutputStream`` writes it. Reading accepts that and a
  bare raw snappy block (librdkafka and some other clients write one), and
  concatenated xerial streams.
* lz4: the LZ4 frame format with independent 64 KiB blocks and no content size or
  checksum, as Kafka's ``Lz4BlockOutputStream`` writes it (Kafka cannot read linked
  blocks). Reading accepts any valid frame.
* zstd: a zstd frame (level 3, Kafka's default). Reading accepts frames without a
  content size (zstd-jni's streaming writer omits it) and concatenated frames.

Bad input raises :class:`CompressionError`; an id that is none of the above raises
:class:`UnsupportedCodec`. Both are :class:`~kbroker.wire.records.CorruptBatch`.
"""

from __future__ import annotations

import struct
import threading
import zlib

import cramjam
import lz4.frame
import zstandard

from kbroker.wire.records import CorruptBatch

NONE = 0
GZIP = 1
SNAPPY = 2
LZ4 = 3
ZSTD = 4

NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
IDS = {name: codec for codec, name in NAMES.items()}

# Kafka's defaults (KIP-390 compression.<codec>.level)
GZIP_DEFAULT_LEVEL = 6
ZSTD_DEFAULT_LEVEL = 3
LZ4_DEFAULT_LEVEL = 0  # lz4's fast compressor

XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
XERIAL_BLOCK_SIZE = 32 * 1024
_INT32 = struct.Struct(">i")

_GZIP_MAGIC = b"\x1f\x8b"
_LZ4_BLOCK_SIZE = lz4.frame.BLOCKSIZE_MAX64KB


class CompressionError(CorruptBatch):
    """Compressed records that do not decompress (Kafka's CORRUPT_MESSAGE)."""


class UnsupportedCodec(CorruptBatch):
    """A compression id that is not one of Kafka's codecs."""


def codec_name(codec_id: int) -> str:
    try:
        return NAMES[codec_id]
    except KeyError:
        raise UnsupportedCodec(f"unknown compression type id {codec_id}") from None


# --- gzip -------------------------------------------------------------------------


def _gzip_compress(data, level: int | None) -> bytes:
    return zlib.compress(data, GZIP_DEFAULT_LEVEL if level is None else level, wbits=31)


def _gzip_decompress(data) -> bytes:
    out = []
    while True:
        d = zlib.decompressobj(31)
        out.append(d.decompress(data))
        if not d.eof:
            raise CompressionError("gzip data is truncated")
        data = d.unused_data
        # GZIPInputStream reads further members and ignores trailing bytes that are not one
        if not data.startswith(_GZIP_MAGIC):
            break
    return out[0] if len(out) == 1 else b"".join(out)


# --- snappy -----------------------------------------------------------------------


def _snappy_compress(data, level: int | None) -> bytes:
    view = memoryview(data)
    size = len(view)
    out = bytearray(XERIAL_HEADER)
    compress = cramjam.snappy.compress_raw
    for start in range(0, size, XERIAL_BLOCK_SIZE):
        block = compress(view[start : start + XERIAL_BLOCK_SIZE])
        out += _INT32.pack(len(block))
        out += block
    return bytes(out)


def _snappy_decompress(data) -> bytes:
    view = memoryview(data)
    if bytes(view[:8]) != XERIAL_MAGIC:
        return bytes(cramjam.snappy.decompress_raw(view))
    if len(view) < 16:
        raise CompressionError("snappy (xerial) header is truncated")
    decompress = cramjam.snappy.decompress_raw
    out = bytearray()
    pos = 16
    end = len(view)
    while pos < end:
        # xerial's reader accepts concatenated streams: a block length never starts
        # with 0x82 (it would be negative), so a header here is unambiguous
        if view[pos] == 0x82:
            if bytes(view[pos : pos + 8]) != XERIAL_MAGIC or pos + 16 > end:
                raise CompressionError("bad snappy (xerial) stream header")
            pos += 16
            continue
        if pos + 4 > end:
            raise CompressionError("snappy (xerial) block length is truncated")
        (length,) = _INT32.unpack_from(view, pos)
        pos += 4
        if length < 0 or pos + length > end:
            raise CompressionError("snappy (xerial) block is truncated")
        out += decompress(view[pos : pos + length])
        pos += length
    return bytes(out)


# --- lz4 --------------------------------------------------------------------------


def _lz4_compress(data, level: int | None) -> bytes:
    return lz4.frame.compress(
        data,
        compression_level=LZ4_DEFAULT_LEVEL if level is None else level,
        block_size=_LZ4_BLOCK_SIZE,
        block_linked=False,
        content_checksum=False,
        store_size=False,
    )


def _lz4_decompress(data) -> bytes:
    d = lz4.frame.LZ4FrameDecompressor()
    out = d.decompress(data)
    if not d.eof:
        raise CompressionError("lz4 frame is truncated")
    # like Kafka's Lz4BlockInputStream, ignore whatever follows the end mark
    return out


# --- zstd -------------------------------------------------------------------------

_zstd_local = threading.local()


def _zstd_compressor(level: int) -> zstandard.ZstdCompressor:
    # A ZstdCompressor is reusable (creating one costs ~8 us) but not thread-safe.
    cache = getattr(_zstd_local, "compressors", None)
    if cache is None:
        cache = _zstd_local.compressors = {}
    compressor = cache.get(level)
    if compressor is None:
        compressor = cache[level] = zstandard.ZstdCompressor(level=level)
    return compressor


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_zstd_local, "decompressor", None)
    if d is None:
        d = _zstd_local.decompressor = zstandard.ZstdDecompressor()
    return d


def _zstd_compress(data, level: int | None) -> bytes:
    return _zstd_compressor(ZSTD_DEFAULT_LEVEL if level is None else level).compress(data)


def _zstd_decompress(data) -> bytes:
    # decompressobj handles frames with no content size; loop for concatenated frames
    decompressor = _zstd_decompressor()
    out = []
    data = bytes(data)
    while True:
        d = decompressor.decompressobj()
        out.append(d.decompress(data))
        if not d.eof:
            raise CompressionError("zstd frame is truncated")
        data = d.unused_data
        if not data:
            break
    return out[0] if len(out) == 1 else b"".join(out)


# --- dispatch ---------------------------------------------------------------------

_COMPRESS = {
    GZIP: _gzip_compress,
    SNAPPY: _snappy_compress,
    LZ4: _lz4_compress,
    ZSTD: _zstd_compress,
}
_DECOMPRESS = {
    GZIP: _gzip_decompress,
    SNAPPY: _snappy_decompress,
    LZ4: _lz4_decompress,
    ZSTD: _zstd_decompress,
}
# errors each library raises on bad input
_LIB_ERRORS = (
    zlib.error,
    cramjam.DecompressionError,
    cramjam.CompressionError,
    zstandard.ZstdError,
    RuntimeError,  # lz4.frame
    ValueError,
    EOFError,
    OverflowError,
    struct.error,
)


def compress(codec_id: int, data, level: int | None = None) -> bytes:
    """Compress ``data`` (any bytes-like) with the codec Kafka numbers ``codec_id``.

    ``level`` is the codec's own level (Kafka's ``compression.<codec>.level``);
    None means Kafka's default. Codec 0 returns the data unchanged.
    """
    if codec_id == NONE:
        return bytes(data)
    fn = _COMPRESS.get(codec_id)
    if fn is None:
        codec_name(codec_id)
    try:
        return fn(data, level)
    except _LIB_ERRORS as exc:
        raise CompressionError(f"{NAMES[codec_id]} compression failed: {exc}") from exc


def decompress(codec_id: int, data) -> bytes:
    """Decompress ``data`` (any bytes-like) written with codec ``codec_id``.

    Raises CompressionError for data that does not decompress, UnsupportedCodec for
    an unknown id.
    """
    if codec_id == NONE:
        return bytes(data)
    fn = _DECOMPRESS.get(codec_id)
    if fn is None:
        codec_name(codec_id)
    try:
        return fn(data)
    except CorruptBatch:
        raise
    except _LIB_ERRORS as exc:
        raise CompressionError(f"corrupt {NAMES[codec_id]} data: {exc}") from exc
