"""Codec payload formats over RTP, the one copy forwarding and recording share.

- VP8 (RFC 7741): the payload descriptor in front of each packet, the frame's key bit.
- H.264 (RFC 6184): single NAL units, STAP-A aggregates and FU-A fragments.

Forwarding only asks "does this packet start a keyframe?" (a new viewer starts there);
recording reassembles whole frames."""

from __future__ import annotations

from collections.abc import Iterator

# H.264 NAL unit types (ITU-T H.264 Table 7-1; 24 and 28 from RFC 6184)
IDR = 5
SPS = 7
PPS = 8
STAP_A = 24
FU_A = 28


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def vp8_descriptor_length(payload: bytes) -> int | None:
    """Length of the RFC 7741 VP8 payload descriptor, or None if the payload is truncated."""
    b0 = payload[0]
    i = 1
    if b0 & 0x80:
        if len(payload) < 2:
            return None
        b1 = payload[1]
        i = 2
        if b1 & 0x80:  # picture id
            if len(payload) <= i:
                return None
            i += 2 if payload[i] & 0x80 else 1
        if b1 & 0x40:  # TL0PICIDX
            i += 1
        if b1 & 0x30:  # TID / KEYIDX
            i += 1
    return i


def vp8_starts_frame(payload: bytes) -> bool:
    """S bit set and partition index 0: the first packet of a frame."""
    b0 = payload[0]
    return bool(b0 & 0x10) and not b0 & 0x07


def vp8_is_keyframe(frame: bytes) -> bool:
    """The P bit of the VP8 frame tag (RFC 6386 §9.1) is 0 on keyframes."""
    return not frame[0] & 0x01


def vp8_frame(payloads: list[bytes]) -> bytes | None:
    """The VP8 frame carried by these RTP payloads (descriptors removed); None if unusable."""
    parts = []
    for n, p in enumerate(payloads):
        if not p:
            return None
        i = vp8_descriptor_length(p)
        if i is None:
            return None
        if n == 0 and not vp8_starts_frame(p):
            return None  # does not start a frame (first packet lost)
        parts.append(p[i:])
    frame = b"".join(parts)
    return frame or None


def stap_a_units(payload: bytes) -> Iterator[bytes]:
    """The NAL units aggregated in one STAP-A payload (truncated ones skipped)."""
    i = 1
    while i + 2 <= len(payload):
        size = (payload[i] << 8) | payload[i + 1]
        if size and i + 2 + size <= len(payload):
            yield payload[i + 2 : i + 2 + size]
        i += 2 + size


def h264_access_unit(payloads: list[bytes]) -> list[bytes]:
    """NAL units of one frame from its RTP payloads (packetization-mode 0 and 1)."""
    nals: list[bytes] = []
    fu: bytearray | None = None
    for p in payloads:
        if not p:
            continue
        kind = nal_type(p)
        if 1 <= kind <= 23:
            nals.append(p)
        elif kind == STAP_A:
            nals.extend(stap_a_units(p))
        elif kind == FU_A and len(p) > 2:
            header = p[1]
            if header & 0x80:  # start: rebuild the NAL header from the FU indicator and header
                fu = bytearray(((p[0] & 0xE0) | (header & 0x1F),))
                fu += p[2:]
            elif fu is not None:
                fu += p[2:]
            if header & 0x40 and fu is not None:  # end
                nals.append(bytes(fu))
                fu = None
    return nals


def is_keyframe_start(codec: str, payload: bytes) -> bool:
    """True if this RTP payload starts a keyframe (VP8 / H.264); audio is always True."""
    if not payload:
        return False
    if codec == "vp8":
        if not vp8_starts_frame(payload):
            return False
        i = vp8_descriptor_length(payload)
        return i is not None and len(payload) > i and vp8_is_keyframe(payload[i : i + 1])
    if codec == "h264":
        kind = payload[0] & 0x1F  # nal_type(), inlined: this runs for every video packet
        if kind in (IDR, SPS):
            return True
        if kind == STAP_A:
            return any(nal_type(unit) in (IDR, SPS) for unit in stap_a_units(payload))
        if kind == FU_A and len(payload) > 1:
            return bool(payload[1] & 0x80) and payload[1] & 0x1F in (IDR, SPS)
        return False
    return True
