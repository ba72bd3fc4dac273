"""Which simulcast layer one viewer gets: what its link carries, told by its own RTCP.

Pure logic, no I/O: the forwarder feeds it the viewer's REMB (the browser's receive-side
estimate, draft-alvestrand-rmcat-remb) and receiver-report loss (RFC 3550 fraction lost),
and asks `decide` five times a second. The rules, in the spirit of libwebrtc's loss-based
controller and of how SFUs (mediasoup, LiveKit) pick layers:

- **down at once** when the link says it cannot carry what it gets: loss above 10 %, or a
  REMB that falls below what is sent (the estimator saw queues grow). A REMB that is below
  what is sent but rising is not congestion: a receive-side estimate never runs more than
  1.5 x ahead of what arrives, so it lags every switch up by seconds. The new layer is the
  best one that fits in the estimate with room for audio.
- **up only after proof**: a viewer that has never been congested starts on (and returns to)
  the best layer its cap allows. After congestion, going up first *probes*: padding at the
  rate the higher layer needs more, for PROBE_SECONDS; the switch happens only if the
  receiver reports no loss for it, and its REMB did not fall and reached what the higher
  layer and audio need. A sign of congestion during a probe ends it at once (the padding is
  to blame: the viewer stays, and its reports are not acted on until they no longer cover
  the padding). A viewer without an RTX stream (nothing to pad on) gets a trial switch up
  instead, undone at the first congestion. A failed probe or trial doubles the wait
  before the next one (UP_BACKOFF_MIN to UP_BACKOFF_MAX), so a viewer on a weak link is not
  disturbed more than once a minute.
- the viewer's own cap (the watch page's High / Medium / Low) bounds all of it.
"""

from __future__ import annotations

from dataclasses import dataclass

LOSS_DOWN = 0.10  # receiver-report loss above which the layer is too much for the link
LOSS_UP = 0.02  # loss under which a probe counts as carried
REMB_DOWN = 0.85  # a REMB under this share of the sent rate means the link is full
HEADROOM = 0.9  # the chosen layer (+ audio) fills at most this share of the estimate
FEEDBACK_TTL = 3.0  # seconds a REMB or loss figure stays current
PROBE_SECONDS = 2.0
PROBE_OVERSHOOT = 1.1  # padding brings the sent rate to this share of the higher layer's
PROBE_VERDICT = 1.5  # seconds after a probe for the receiver's reports to cover it
TRIAL_SECONDS = 4.0  # congestion this soon after going up undoes the move and backs off
UP_BACKOFF_MIN = 8.0
UP_BACKOFF_MAX = 64.0


@dataclass(frozen=True)
class LayerInfo:
    index: int  # 0 = the lowest layer
    rate: float  # bits per second it is sending (smoothed)
    active: bool  # sending now (browsers pause top layers on a weak uplink)
    stable: bool = True  # sending for a while (a layer that flaps is not switched up to)


@dataclass(frozen=True)
class Decision:
    target: int | None  # the layer to be on (None: no layer to choose)
    probe_bps: float = 0.0  # padding to send now, bits per second


@dataclass
class _Probe:
    target: int
    rate: float  # padding, bits per second
    started: float
    until: float
    need: float  # what the target layer and audio take, bits per second
    worst_loss: float = 0.0


class LayerChoice:
    """One video viewer's layer decisions (times are one monotonic clock, in seconds)."""

    def __init__(self) -> None:
        self.cap: int | None = None  # the viewer's maximum layer (None: Auto)
        self.remb: float | None = None
        self.remb_at = -1e9
        self.remb_fell_at = -1e9  # when the viewer's REMB last fell
        self.loss = 0.0  # smoothed receiver-report fraction lost
        self.loss_at = -1e9
        self.congested_at: float | None = None
        self.backoff = UP_BACKOFF_MIN
        self.next_up_at = 0.0
        self.probe: _Probe | None = None
        self.quiet_until = 0.0  # congestion reports before this still cover a probe's padding
        self.up_at = -1e9  # when the viewer last went up a layer
        self.probes = 0  # probes started (tests, stats)
        self.switches = 0

    # feedback -------------------------------------------------------------------------

    def on_remb(self, bps: float, now: float) -> None:
        # libwebrtc sends a REMB at once when its estimate drops 3 % or more: a fall is news
        if self.remb is not None and now - self.remb_at < FEEDBACK_TTL:
            if bps < 0.97 * self.remb:
                self.remb_fell_at = now
        self.remb = bps
        self.remb_at = now

    def on_loss(self, fraction: float, now: float) -> None:
        # a report covers about a second: smooth lightly, a real jump shows at once
        self.loss = fraction if now - self.loss_at > FEEDBACK_TTL else 0.5 * self.loss + 0.5 * fraction
        self.loss_at = now
        probe = self.probe
        if probe is not None and now > probe.started + 0.5:
            probe.worst_loss = max(probe.worst_loss, fraction)

    def estimate(self, now: float) -> float | None:
        """What the viewer's link is believed to carry, bits per second (None: no figure)."""
        return self.remb if now - self.remb_at < FEEDBACK_TTL else None

    def probe_rate(self, now: float) -> float:
        probe = self.probe
        return probe.rate if probe is not None and now < probe.until else 0.0

    # the decision ---------------------------------------------------------------------

    def decide(self, now: float, current: int | None, layers: list[LayerInfo], audio_rate: float,
               can_pad: bool = True) -> Decision:
        """The layer to be on now; `can_pad`: the viewer has an RTX stream to probe on."""
        active = [x for x in layers if x.active]
        if not layers:
            return Decision(None)
        allowed = [x for x in (active or layers) if self.cap is None or x.index <= self.cap]
        if not allowed:  # the cap is below every sending layer: the lowest one sending
            allowed = (active or layers)[:1]
        by_index = {x.index: x for x in layers}
        if current is None or current not in by_index or (active and not by_index[current].active):
            self.probe = None
            return Decision(self._fit(allowed, now, audio_rate).index)
        # going up (or staying) only to a layer that has been sending steadily
        allowed = [x for x in allowed if x.stable or x.index <= current] or allowed
        best = allowed[-1]
        if current > best.index:  # the cap went down, or the layer above stopped
            self.probe = None
            return Decision(best.index)
        sent = by_index[current].rate + audio_rate
        remb = self.estimate(now)
        loss = self.loss if now - self.loss_at < FEEDBACK_TTL else 0.0
        falling = now - self.remb_fell_at < FEEDBACK_TTL
        congested = loss > LOSS_DOWN or (remb is not None and falling and sent > 0 and remb < REMB_DOWN * sent)
        if self.probe is not None:
            if congested:  # the padding overfills the link: stop it, stay, let the reports clear
                self._failed(now)
                self.quiet_until = now + PROBE_VERDICT
                return Decision(current)
            return self._judge(now, current, by_index, remb)
        if congested and now >= self.quiet_until:
            if now - self.up_at < TRIAL_SECONDS:
                self._failed(now)  # a trial switch up the link could not carry
            self.congested_at = now
            self.next_up_at = max(self.next_up_at, now + self.backoff)
            target = self._fit([x for x in allowed if x.index <= current], now, audio_rate, loss, sent)
            return Decision(min(target.index, current))
        if current < best.index and now >= self.quiet_until:
            if self.congested_at is None:
                return Decision(best.index)  # never congested: the best layer the cap allows
            if now >= self.next_up_at and loss < LOSS_UP:
                above = next(x for x in allowed if x.index > current)
                if not can_pad:  # nothing to probe with: try the layer, undone on congestion
                    self.up_at = now
                    self.switches += 1
                    return Decision(above.index)
                # a little above the gap: the layer's own rate varies, keyframes come in bursts
                gap = max(PROBE_OVERSHOOT * above.rate - by_index[current].rate, 100_000.0)
                self.probe = _Probe(above.index, gap, now, now + PROBE_SECONDS, above.rate + audio_rate)
                self.probes += 1
                return Decision(current, gap)
        return Decision(current)

    def _fit(self, allowed: list[LayerInfo], now: float, audio_rate: float, loss: float = 0.0,
             sent: float = 0.0) -> LayerInfo:
        """The best allowed layer that fits the estimate (the lowest if none does)."""
        budget = self.estimate(now)
        if loss > LOSS_DOWN and sent:
            by_loss = sent * (1 - 0.5 * loss)
            budget = by_loss if budget is None else min(budget, by_loss)
        if budget is None:
            return allowed[-1]
        fitting = [x for x in allowed if x.rate + audio_rate <= HEADROOM * budget]
        return fitting[-1] if fitting else allowed[0]

    def _judge(self, now: float, current: int, by_index: dict[int, LayerInfo], remb: float | None) -> Decision:
        probe = self.probe
        assert probe is not None
        if now < probe.until + PROBE_VERDICT:
            return Decision(current, probe.rate if now < probe.until else 0.0)
        self.probe = None
        # carried: no loss, and the receiver's estimate neither fell during the probe (queues
        # grew) nor stayed under what the layer needs
        fell = self.remb_fell_at >= probe.started
        remb_ok = remb is None or (not fell and remb >= probe.need)
        if probe.worst_loss < LOSS_UP and remb_ok and probe.target in by_index:
            self.switches += 1
            self.up_at = now
            return Decision(probe.target)
        self._failed(now)
        return Decision(current)

    def _failed(self, now: float) -> None:
        """A probe or trial switch the link did not carry: wait longer before the next."""
        self.probe = None
        self.next_up_at = now + self.backoff
        self.backoff = min(self.backoff * 2, UP_BACKOFF_MAX)
