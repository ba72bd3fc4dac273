"""The allocation-free SRTP protect of the viewer send path (hooks.srtp_protector, srtp_sender)
against pylibsrtp's own `Session.protect`: byte for byte, for every profile aiortc negotiates,
across a sequence-number wrap (the rollover counter enters the cipher), and on the fallback."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import struct
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiortc.rtcdtlstransport import (
    SRTP_AEAD_AES_128_GCM,
    SRTP_AEAD_AES_256_GCM,
    SRTP_AES128_CM_SHA1_80,
    SRTPProtectionProfile,
)
from pylibsrtp import Error, Policy, Session

from liveclass.media import hooks

pytestmark = pytest.mark.timeout(60)

PROFILES = [SRTP_AEAD_AES_128_GCM, SRTP_AEAD_AES_256_GCM, SRTP_AES128_CM_SHA1_80]
IDS = ["AEAD_AES_128_GCM", "AEAD_AES_256_GCM", "AES128_CM_SHA1_80"]
MEDIA_SSRC, RTX_SSRC = 0x1234ABCD, 0x0BADF00D
LIMIT = hooks.SRTP_BUFFER - 144  # pylibsrtp refuses longer packets (room for its largest trailer)


def tx_session(profile: SRTPProtectionProfile, key: bytes) -> Session:
    """A sending context as aiortc's RTCDtlsTransport._setup_srtp makes `_tx_srtp`."""
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile.libsrtp_profile)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def rx_session(profile: SRTPProtectionProfile, key: bytes) -> Session:
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile.libsrtp_profile)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def new_key(profile: SRTPProtectionProfile) -> bytes:
    return os.urandom(profile.key_length + profile.salt_length)


def extension_block(rng: random.Random) -> bytes:
    """None, a one-byte (0xBEDE) or a two-byte (0x100x) header-extension block, random words."""
    kind = rng.choice(("none", "one-byte", "two-byte"))
    if kind == "none":
        return b""
    words = rng.randint(1, 8)
    profile = 0xBEDE if kind == "one-byte" else 0x1000 | rng.randint(0, 15)
    return struct.pack("!HH", profile, words) + rng.randbytes(4 * words)


def random_packets(rng: random.Random, count: int) -> Iterator[tuple[int, bytes]]:
    """(media seq, packet): RTP packets 20..1400 bytes on a media and an RTX SSRC, both
    wrapping 65535 -> 0 within `count`, with resends of earlier numbers (allow_repeat_tx)."""
    seq = {MEDIA_SSRC: 65535 - count // 3, RTX_SSRC: 65535 - count // 2}
    ts = {MEDIA_SSRC: rng.getrandbits(32), RTX_SSRC: rng.getrandbits(32)}
    sent: list[tuple[int, int]] = []
    for _ in range(count):
        ssrc = MEDIA_SSRC if rng.random() < 0.8 else RTX_SSRC
        if sent and rng.random() < 0.05:  # a resend: same SSRC and number again
            ssrc, number = rng.choice(sent[-200:])
        else:
            number = seq[ssrc]
            seq[ssrc] = (number + 1) & 0xFFFF
            ts[ssrc] = (ts[ssrc] + rng.choice((0, 0, 3000))) & 0xFFFFFFFF
            sent.append((ssrc, number))
        csrc = b"".join(struct.pack("!I", rng.getrandbits(32)) for _ in range(rng.choice((0, 0, 0, 1, 2))))
        ext = extension_block(rng)
        size = rng.randint(20, 1400)
        b0 = 0x80 | len(csrc) // 4 | (0x10 if ext else 0)
        header = struct.pack("!BBHII", b0, rng.choice((0, 0x80)) | rng.choice((96, 97, 111)), number,
                             ts[ssrc], ssrc) + csrc + ext
        yield number if ssrc == MEDIA_SSRC else -1, header + rng.randbytes(max(0, size - len(header)))


def outcome(protect: Callable[[bytes], bytes], packet: bytes) -> bytes | tuple[type, str]:
    try:
        return protect(packet)
    except (ValueError, Error) as exc:
        return type(exc), str(exc)


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_fast_protect_equals_session_protect(profile: SRTPProtectionProfile) -> None:
    key = new_key(profile)
    reference, session = tx_session(profile, key), tx_session(profile, key)
    fast = hooks.srtp_protector(session)
    assert fast != session.protect  # the fast path, not the fallback
    receiver = rx_session(profile, key)
    rng = random.Random(0x5EED + profile.libsrtp_profile)
    numbers: list[int] = []
    too_long, after_wrap = 0, None
    received: set[bytes] = set()
    for number, packet in random_packets(rng, 1000):
        expected, got = outcome(reference.protect, packet), outcome(fast, packet)
        assert got == expected, (number, len(packet))
        if isinstance(got, tuple):
            assert len(packet) > LIMIT and got == (ValueError, "packet is too long")
            too_long += 1
            continue
        assert len(got) > len(packet) and got[:2] == packet[:2]  # encrypted, header in the clear
        ssrc_seq = packet[2:4] + packet[8:12]
        if ssrc_seq not in received:  # the receiver's replay check refuses resends
            received.add(ssrc_seq)
            assert receiver.unprotect(got) == packet
        if number >= 0:
            if numbers and numbers[-1] == 65535 and number == 0:
                after_wrap = (packet, got)
            numbers.append(number)
    assert 65535 in numbers and 0 in numbers and too_long > 0
    # the wrap raised the rollover counter: a fresh context (ROC 0) protects that packet differently
    assert after_wrap is not None
    assert tx_session(profile, key).protect(after_wrap[0]) != after_wrap[1]


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_the_sizes_at_the_limit_and_the_errors_match(profile: SRTPProtectionProfile) -> None:
    key = new_key(profile)
    reference, session = tx_session(profile, key), tx_session(profile, key)
    fast = hooks.srtp_protector(session)
    for seq, size in enumerate((12, LIMIT - 1, LIMIT, LIMIT + 1, hooks.SRTP_BUFFER, 1400, 12)):
        packet = struct.pack("!BBHII", 0x80, 96, seq, 0, MEDIA_SSRC) + bytes(max(0, size - 12))
        assert outcome(fast, packet) == outcome(reference.protect, packet), size
    # libsrtp's own error (too short for an RTP header), with pylibsrtp's message
    assert outcome(fast, b"\x80\x60\x00") == outcome(reference.protect, b"\x80\x60\x00")
    assert isinstance(outcome(fast, b"\x80\x60\x00"), tuple)


@pytest.mark.parametrize("profile", PROFILES, ids=IDS)
def test_the_fallback_is_session_protect(profile: SRTPProtectionProfile, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(hooks, "_ffi", None)  # as if pylibsrtp's private binding were gone
    monkeypatch.setattr(hooks, "_fallback_logged", False)
    key = new_key(profile)
    reference, session = tx_session(profile, key), tx_session(profile, key)
    with caplog.at_level(logging.INFO, logger="liveclass.media.hooks"):
        fallback = hooks.srtp_protector(session)
        hooks.srtp_protector(tx_session(profile, key))
    assert fallback == session.protect
    assert caplog.text.count("SRTP uses Session.protect") == 1  # logged once
    for _number, packet in random_packets(random.Random(7), 300):
        assert outcome(fallback, packet) == outcome(reference.protect, packet)


def test_a_session_that_differs_takes_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    session = tx_session(SRTP_AEAD_AES_256_GCM, new_key(SRTP_AEAD_AES_256_GCM))
    assert hooks._binding_fits(session)
    monkeypatch.setattr(session, "_srtp", object())  # not an srtp_t *
    assert not hooks._binding_fits(session)
    assert hooks.srtp_protector(session) == session.protect


class Sink:
    """A loopback UDP socket that a real asyncio datagram transport sends to."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)

    def recv(self) -> bytes:
        return self.sock.recv(2048)

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(2048)
            return True
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(5)


async def stub_dtls(sink: Sink) -> tuple[Any, asyncio.DatagramTransport]:
    """The objects srtp_sender reads (dtls._tx_srtp, the nominated pair's transport and address),
    around a real datagram transport on 127.0.0.1."""
    loop = asyncio.get_running_loop()
    transport, _protocol = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                               local_addr=("127.0.0.1", 0))
    pair = SimpleNamespace(protocol=SimpleNamespace(transport=transport), remote_addr=sink.sock.getsockname())
    dtls = SimpleNamespace(_tx_srtp=None, transport=SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair})))
    return dtls, transport


@pytest.mark.parametrize("fallback", [False, True], ids=["fast", "fallback"])
def test_srtp_sender_sends_what_session_protect_gives(fallback: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if fallback:
        monkeypatch.setattr(hooks, "_ffi", None)
    profile = SRTP_AEAD_AES_256_GCM
    sink = Sink()

    async def scenario() -> None:
        dtls, transport = await stub_dtls(sink)
        try:
            send = hooks.srtp_sender(dtls)
            packets = [p for _n, p in random_packets(random.Random(11), 400) if len(p) <= LIMIT]
            assert not send(packets[0])  # before DTLS: no context, dropped
            assert not sink.pending()
            for generation in range(2):  # the second: DTLS set up a new context (renegotiated)
                key = new_key(profile)
                dtls._tx_srtp = tx_session(profile, key)
                reference = tx_session(profile, key)
                for packet in packets[generation * 200:(generation + 1) * 200]:
                    assert send(packet)
                    assert sink.recv() == reference.protect(packet)
            dtls.transport._connection._nominated.clear()  # no pair (ICE lost): dropped
            assert not send(packets[0])
            assert not sink.pending()
        finally:
            transport.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 20))
    finally:
        sink.sock.close()
