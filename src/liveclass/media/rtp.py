"""RTP wire format: the fixed header (RFC 3550 §5.1), header extensions (RFC 8285),
RTX payloads (RFC 4588) and the two extensions the server rewrites.

Plain byte work on `bytes`; no aiortc objects (aiortc's RtpPacket allocates per packet,
too slow for the fan-out loop)."""

from __future__ import annotations

import struct

HEADER = struct.Struct("!BBHII")  # V|P|X|CC, M|PT, sequence number, timestamp, SSRC
EXTENSION_HEADER = struct.Struct("!HH")  # profile, length in 32-bit words
SEQUENCE = struct.Struct("!H")  # RTX: the original sequence number before the payload
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"  # RFC 8843 BUNDLE: each viewer has its own
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"  # restamped per send
TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"  # RFC 8852: the simulcast layer
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
# Hop-by-hop: they describe the publisher's link, never copied to a viewer.
PUBLISHER_ONLY_URIS = frozenset({TRANSPORT_CC_URI, RID_URI, REPAIRED_RID_URI})
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)


# A publisher packet split into the parts the forwarder rewrites or copies: (marker 0x80 or 0,
# payload type, sequence number, timestamp, SSRC, the CSRC list as is, [(extension id as the
# sender numbered it, value)], padding flag, payload with its padding). A plain tuple, not a
# NamedTuple: building one costs a Python-level __new__ per packet.
Packet = tuple[int, int, int, int, int, bytes, list[tuple[int, bytes]], bool, bytes]


def parse(data: bytes) -> Packet | None:
    """Split one RTP packet; None if it is too short to be one."""
    if len(data) < 12:
        return None
    b0 = data[0]
    seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
    pos = 12 + 4 * (b0 & 0x0F)
    csrc = data[12:pos]
    extensions: list[tuple[int, bytes]] = []
    if b0 & 0x10:
        if len(data) < pos + 4:
            return None
        profile, length = EXTENSION_HEADER.unpack_from(data, pos)
        end = pos + 4 + 4 * length
        extensions = parse_extensions(profile, data[pos + 4 : end])
        pos = end
    return data[1] & 0x80, data[1] & 0x7F, seq, ts, ssrc, csrc, extensions, bool(b0 & 0x20), data[pos:]


def without_padding(body: bytes, padding: bool) -> bytes:
    """The payload without its padding (the last byte counts the padding bytes)."""
    return body[: -body[-1]] if padding and body else body


def unwrap_rtx(body: bytes) -> tuple[int, bytes] | None:
    """RFC 4588: (original sequence number, original payload); None for a padding-only probe."""
    if len(body) < 2:
        return None
    return (body[0] << 8) | body[1], body[2:]


def parse_extensions(profile: int, data: bytes) -> list[tuple[int, bytes]]:
    """The (id, value) elements of a one-byte (0xBEDE) or two-byte (0x100X) extension block."""
    out: list[tuple[int, bytes]] = []
    n = len(data)
    i = 0
    if profile == ONE_BYTE_PROFILE:
        while i < n:
            b = data[i]
            if b == 0:
                i += 1
                continue
            xid = b >> 4
            if xid == 15:
                break
            length = (b & 0x0F) + 1
            out.append((xid, data[i + 1 : i + 1 + length]))
            i += 1 + length
    elif profile & 0xFFF0 == TWO_BYTE_PROFILE:
        while i + 1 < n:
            xid = data[i]
            if xid == 0:
                i += 1
                continue
            length = data[i + 1]
            out.append((xid, data[i + 2 : i + 2 + length]))
            i += 2 + length
    return out


def build_extensions(items: list[tuple[int, bytes]]) -> bytes:
    """Header-extension block (profile, length, elements, padding) or b"" if none."""
    if not items:
        return b""
    if all(1 <= xid <= 14 and 1 <= len(v) <= 16 for xid, v in items):
        body = b"".join(bytes(((xid << 4) | (len(v) - 1),)) + v for xid, v in items)
        profile = ONE_BYTE_PROFILE
    else:
        body = b"".join(bytes((xid, len(v))) + v for xid, v in items)
        profile = TWO_BYTE_PROFILE
    body += b"\x00" * (-len(body) % 4)
    return EXTENSION_HEADER.pack(profile, len(body) // 4) + body


def abs_send_time(wall: float) -> bytes:
    """The abs-send-time value for a Unix time: 24-bit 6.18 fixed-point NTP seconds."""
    return (int((wall + NTP_EPOCH_OFFSET) * 262144) & 0xFFFFFF).to_bytes(3, "big")
