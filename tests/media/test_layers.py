"""Layer choice for one viewer, on a simulated clock: down at once, up only after a probe."""

from __future__ import annotations

from liveclass.media.layers import (
    PROBE_OVERSHOOT,
    PROBE_SECONDS,
    PROBE_VERDICT,
    UP_BACKOFF_MAX,
    UP_BACKOFF_MIN,
    LayerChoice,
    LayerInfo,
)

RATES = (150_000.0, 500_000.0, 2_500_000.0)
AUDIO = 128_000.0


def layers(active: tuple[bool, bool, bool] = (True, True, True)) -> list[LayerInfo]:
    return [LayerInfo(n, rate, on) for n, (rate, on) in enumerate(zip(RATES, active, strict=True))]


def test_a_new_viewer_gets_the_best_layer_its_cap_allows() -> None:
    choice = LayerChoice()
    assert choice.decide(0.0, None, layers(), AUDIO).target == 2
    choice.cap = 1
    assert choice.decide(0.5, 2, layers(), AUDIO).target == 1  # the cap went down: at once
    choice.cap = 0
    assert choice.decide(1.0, None, layers(), AUDIO).target == 0
    choice.cap = None
    assert choice.decide(1.5, 0, layers(), AUDIO).target == 2  # never congested: straight back up


def test_a_paused_layer_is_left_for_the_best_one_still_sending() -> None:
    choice = LayerChoice()
    assert choice.decide(0.0, 2, layers((True, True, False)), AUDIO).target == 1


def test_a_layer_that_just_resumed_is_not_switched_up_to() -> None:
    choice = LayerChoice()
    flapping = [LayerInfo(0, RATES[0], True), LayerInfo(1, RATES[1], True), LayerInfo(2, RATES[2], True, False)]
    assert choice.decide(0.0, 1, flapping, AUDIO).target == 1  # the top one resumed a moment ago
    assert choice.decide(0.2, 1, layers(), AUDIO).target == 2  # steady now


def fall_to(choice: LayerChoice, bps: float, now: float) -> None:
    """The viewer's REMB drops from a healthy figure to `bps` (its estimator saw queues grow)."""
    choice.on_remb(3_000_000.0, now - 0.1)
    choice.on_remb(bps, now)


def test_loss_or_a_low_remb_moves_down_to_what_fits() -> None:
    choice = LayerChoice()
    fall_to(choice, 600_000.0, 0.0)  # REMB falls far below the 2.6 Mbit/s sent
    decision = choice.decide(0.1, 2, layers(), AUDIO)
    assert decision.target == 0  # 500 k + audio does not fit in 90 % of 600 k; 150 k + audio does
    choice = LayerChoice()
    choice.on_loss(0.25, 0.0)
    assert choice.decide(0.1, 2, layers(), AUDIO).target == 1  # 2.6 M x (1 - 0.125) leaves the middle
    choice = LayerChoice()
    choice.on_remb(2_900_000.0, 0.0)
    choice.on_loss(0.01, 0.0)
    assert choice.decide(0.1, 2, layers(), AUDIO).target == 2  # a healthy link keeps the top layer


def test_a_low_but_rising_remb_is_a_lagging_estimate_not_congestion() -> None:
    choice = LayerChoice()
    for n, bps in enumerate((700_000.0, 760_000.0, 820_000.0, 890_000.0)):  # after a switch up
        choice.on_remb(bps, n * 0.5)
        assert choice.decide(n * 0.5, 2, layers(), AUDIO).target == 2
    assert choice.congested_at is None


def test_going_back_up_needs_a_probe_the_link_carries() -> None:
    choice = LayerChoice()
    fall_to(choice, 600_000.0, 0.0)
    assert choice.decide(0.0, 2, layers(), AUDIO).target == 0
    now = 1.0
    while now < UP_BACKOFF_MIN:  # no probe before the back-off, however calm the link
        choice.on_remb(450_000.0, now)
        choice.on_loss(0.0, now)
        assert choice.decide(now, 0, layers(), AUDIO).probe_bps == 0.0
        now += 0.5
    now = UP_BACKOFF_MIN + 0.5
    choice.on_remb(450_000.0, now)
    decision = choice.decide(now, 0, layers(), AUDIO)
    assert decision.target == 0 and decision.probe_bps == PROBE_OVERSHOOT * RATES[1] - RATES[0]  # the gap
    assert choice.probe_rate(now + 0.1) == decision.probe_bps
    end = now + PROBE_SECONDS + PROBE_VERDICT + 0.1
    t = now
    while t < end:  # the receiver reports no loss through the probe and its REMB holds
        t += 0.5
        choice.on_loss(0.0, t)
        choice.on_remb(700_000.0, t)
        decision = choice.decide(t, 0, layers(), AUDIO)
        if decision.target != 0:
            break
    assert decision.target == 1 and choice.probe is None and t >= now + PROBE_SECONDS + PROBE_VERDICT


def test_a_failed_probe_doubles_the_wait_up_to_a_bound() -> None:
    choice = LayerChoice()
    fall_to(choice, 600_000.0, 0.0)
    choice.decide(0.0, 2, layers(), AUDIO)
    waits = []
    now = 0.0
    for _ in range(6):
        start = choice.next_up_at
        now = start + 0.1
        choice.on_remb(450_000.0, now)
        choice.on_loss(0.0, now)
        assert choice.decide(now, 0, layers(), AUDIO).probe_bps > 0
        end = now + PROBE_SECONDS + PROBE_VERDICT + 0.1
        while now < end:
            now += 0.5
            choice.on_loss(0.2, now)  # the probe overfills the link
            choice.on_remb(450_000.0, now)
            decision = choice.decide(now, 0, layers(), AUDIO)
        assert decision.target == 0
        waits.append(choice.next_up_at - now)
    assert waits[0] >= UP_BACKOFF_MIN and waits[1] >= 2 * UP_BACKOFF_MIN - 1
    assert max(waits) <= UP_BACKOFF_MAX + 1 and choice.probes == 6


def test_a_probe_whose_remb_stays_under_the_layers_need_fails() -> None:
    choice = LayerChoice()
    fall_to(choice, 600_000.0, 0.0)
    assert choice.decide(0.0, 2, layers(), AUDIO).target == 0
    now = UP_BACKOFF_MIN + 0.5
    choice.on_remb(450_000.0, now)
    assert choice.decide(now, 0, layers(), AUDIO).probe_bps > 0
    end = now + PROBE_SECONDS + PROBE_VERDICT + 0.1
    while now < end:  # no loss, but the estimate stops short of the middle layer + audio
        now += 0.5
        choice.on_loss(0.0, now)
        choice.on_remb(590_000.0, now)
        decision = choice.decide(now, 0, layers(), AUDIO)
    assert decision.target == 0 and choice.probe is None and choice.next_up_at > now


def test_congestion_during_a_probe_ends_it_and_the_viewer_stays() -> None:
    choice = LayerChoice()
    fall_to(choice, 600_000.0, 0.0)
    choice.decide(0.0, 2, layers(), AUDIO)
    now = UP_BACKOFF_MIN + 0.5
    choice.on_loss(0.0, now)
    choice.on_remb(450_000.0, now)
    assert choice.decide(now, 0, layers(), AUDIO).probe_bps > 0
    choice.on_loss(0.4, now + 0.9)  # the padding overfills the link
    decision = choice.decide(now + 1.0, 0, layers(), AUDIO)
    assert decision.target == 0 and decision.probe_bps == 0 and choice.probe is None
    choice.cap = None
    two = [LayerInfo(1, RATES[1], True), LayerInfo(2, RATES[2], True)]  # the viewer on the middle layer
    assert choice.decide(now + 1.2, 1, two, AUDIO).target == 1  # its reports still cover the padding: no move
    assert choice.next_up_at >= now + 1.0 + UP_BACKOFF_MIN


def test_without_rtx_a_trial_switch_up_is_undone_by_congestion() -> None:
    choice = LayerChoice()
    fall_to(choice, 600_000.0, 0.0)
    choice.decide(0.0, 2, layers(), AUDIO)
    now = UP_BACKOFF_MIN + 0.5
    choice.on_loss(0.0, now)
    decision = choice.decide(now, 0, layers(), AUDIO, can_pad=False)
    assert decision.target == 1 and decision.probe_bps == 0  # no padding possible: try the layer
    choice.on_loss(0.3, now + 1.0)
    assert choice.decide(now + 1.0, 1, layers(), AUDIO, can_pad=False).target == 0
    assert choice.next_up_at >= now + 1.0 + 2 * UP_BACKOFF_MIN - 0.01  # the trial failed: waits doubled
