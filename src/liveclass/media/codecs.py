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


# --- what a layer switch needs: picture size and VP8 picture ids ---------------------------


def _unescape(nal: bytes) -> bytes:
    """The RBSP of a NAL unit: emulation-prevention bytes (00 00 03) removed."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    """Exp-Golomb reader over an RBSP (H.264 §9.1)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]  # IndexError past the end: the caller gives up
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def h264_sps_size(sps: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels from an SPS NAL unit (H.264 §7.3.2.1.1), cropping applied;
    None if it cannot be read."""
    try:
        r = _Bits(_unescape(sps[1:]))
        profile = r.u(8)
        r.u(16)  # constraint flags, level
        r.ue()  # seq_parameter_set_id
        chroma = 1
        if profile in _HIGH_PROFILES:
            chroma = r.ue()
            if chroma == 3:
                r.u(1)
            r.ue()
            r.ue()
            r.u(1)
            if r.u(1):  # scaling matrices: read and ignored
                for i in range(12 if chroma == 3 else 8):
                    if r.u(1):
                        last = nxt = 8
                        for _ in range(16 if i < 6 else 64):
                            if nxt:
                                nxt = (last + r.se() + 256) % 256
                            last = nxt or last
        r.ue()  # log2_max_frame_num_minus4
        poc_type = r.ue()
        if poc_type == 0:
            r.ue()
        elif poc_type == 1:
            r.u(1)
            r.se()
            r.se()
            for _ in range(r.ue()):
                r.se()
        r.ue()  # max_num_ref_frames
        r.u(1)
        width_mbs = r.ue() + 1
        height_units = r.ue() + 1
        frame_mbs_only = r.u(1)
        if not frame_mbs_only:
            r.u(1)
        r.u(1)
        crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.u(1) else (0, 0, 0, 0)
    except (IndexError, ValueError):
        return None
    if chroma == 0:  # crop units (H.264 §7.4.2.1.1): luma samples, or chroma ones for 4:2:0 / 4:2:2
        unit_x, unit_y = 1, 2 - frame_mbs_only
    else:
        unit_x, unit_y = (2 if chroma < 3 else 1), (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - (crop[0] + crop[1]) * unit_x
    height = (2 - frame_mbs_only) * height_units * 16 - (crop[2] + crop[3]) * unit_y
    return (width, height) if width > 0 and height > 0 else None


def keyframe_size(codec: str, payload: bytes) -> tuple[int, int] | None:
    """The picture size a keyframe-starting packet announces (VP8 keyframe header, RFC 6386
    §9.1; H.264 SPS, alone or in a STAP-A); None if this packet does not carry it."""
    if codec == "vp8":
        i = vp8_descriptor_length(payload) if payload else None
        if i is None or len(payload) < i + 10 or not vp8_starts_frame(payload):
            return None
        frame = payload[i:]
        if frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
            return None
        return (frame[6] | (frame[7] << 8)) & 0x3FFF, (frame[8] | (frame[9] << 8)) & 0x3FFF
    if codec == "h264" and payload:
        kind = nal_type(payload)
        if kind == SPS:
            return h264_sps_size(payload)
        if kind == STAP_A:
            for unit in stap_a_units(payload):
                if nal_type(unit) == SPS:
                    return h264_sps_size(unit)
    return None


def vp8_ids(payload: bytes) -> tuple[int, int, int] | None:
    """(picture id, its width in bits (7 or 15; 0 if absent), TL0PICIDX or -1) of a VP8 packet."""
    if len(payload) < 2 or not payload[0] & 0x80:
        return 0, 0, -1
    x = payload[1]
    i = 2
    pid, bits = 0, 0
    if x & 0x80:
        if len(payload) <= i:
            return None
        if payload[i] & 0x80:
            if len(payload) <= i + 1:
                return None
            pid, bits = ((payload[i] & 0x7F) << 8) | payload[i + 1], 15
            i += 2
        else:
            pid, bits = payload[i] & 0x7F, 7
            i += 1
    tl0 = -1
    if x & 0x40:
        if len(payload) <= i:
            return None
        tl0 = payload[i]
    return pid, bits, tl0


def vp8_rewrite(payload: bytes, picture_id_offset: int, tl0_offset: int) -> bytes:
    """The packet with its picture id and TL0PICIDX moved by these offsets (same widths), so a
    viewer switched between simulcast layers sees them continue (RFC 7741 §4.2)."""
    if len(payload) < 3 or not payload[0] & 0x80:
        return payload
    x = payload[1]
    out = bytearray(payload)
    i = 2
    if x & 0x80:
        if out[i] & 0x80:
            if len(out) <= i + 1:
                return payload
            pid = ((((out[i] & 0x7F) << 8) | out[i + 1]) + picture_id_offset) & 0x7FFF
            out[i] = 0x80 | (pid >> 8)
            out[i + 1] = pid & 0xFF
            i += 2
        else:
            out[i] = ((out[i] & 0x7F) + picture_id_offset) & 0x7F
            i += 1
    if x & 0x40 and len(out) > i:
        out[i] = (out[i] + tl0_offset) & 0xFF
    return bytes(out)
