"""The selection threshold of a round: absolute, or calibrated on the committee's labels."""

import numpy as np
import pytest

from molsym.errors import ConfigError
from molsym.learning.settings import LoopSettings
from molsym.learning.threshold import (
    MAX_REFERENCE_FRAMES,
    MIN_THRESHOLD,
    reference_frames,
    round_threshold,
)


def _spreads_and_errors(scale, ratio, n=400, seed=0):
    """Synthetic spreads (log-normal around ``scale``) and errors ``ratio`` times them, noisy."""
    rng = np.random.default_rng(seed)
    spreads = scale * rng.lognormal(0.0, 0.5, n)
    return spreads, ratio * spreads * rng.lognormal(0.0, 0.2, n)


@pytest.mark.parametrize("scale, ratio", [(0.015, 500.0), (0.05, 2.0), (0.2, 0.5)])
def test_calibrated_threshold_divides_the_tolerance_by_the_error_to_spread_ratio(scale, ratio):
    settings = LoopSettings(threshold=0.1)
    spreads, errors = _spreads_and_errors(scale, ratio)
    threshold, measured = round_threshold(settings, spreads, errors)
    assert measured == pytest.approx(ratio, rel=0.1)
    assert threshold == pytest.approx(0.1 / measured)
    # a frame at the threshold has the median error-to-spread ratio's error: the tolerance
    assert threshold * np.median(errors) / np.median(spreads) == pytest.approx(0.1)


def test_a_barely_trained_committee_gets_a_threshold_its_md_exceeds():
    """Spread 0.015 eV/A everywhere, error 5 eV/A: absolute 0.1 picks nothing, calibrated
    picks every frame; a committee whose spread tracks its error keeps about 0.1."""
    spreads, errors = _spreads_and_errors(0.015, 330.0)
    md = _spreads_and_errors(0.015, 330.0, n=50, seed=1)[0]
    calibrated, _ = round_threshold(LoopSettings(), spreads, errors)
    absolute, ratio = round_threshold(LoopSettings(threshold_mode="absolute"), spreads, errors)
    assert absolute == 0.1 and ratio is None and (md > absolute).sum() == 0
    assert (md > calibrated).all()
    converged, _ = round_threshold(LoopSettings(), *_spreads_and_errors(0.05, 1.0))
    assert 0.08 < converged < 0.12


def test_unusable_reference_falls_back_to_the_configured_threshold():
    s = LoopSettings(threshold=0.2)
    assert round_threshold(s, None, None) == (0.2, None)
    assert round_threshold(s, [np.nan, np.inf], [1.0, 1.0]) == (0.2, None)
    assert round_threshold(s, [0.0, 0.0], [1.0, 2.0]) == (0.2, None)  # identical members
    assert round_threshold(s, [1e-3], [1e9])[0] == MIN_THRESHOLD
    assert s.explode_at == pytest.approx(s.explode_factor * 0.2)  # in either mode


def test_threshold_settings_are_checked_and_reference_frames_capped():
    with pytest.raises(ConfigError, match="threshold_mode"):
        LoopSettings(threshold_mode="relative-ish")
    with pytest.raises(ConfigError, match="threshold_quantile"):
        LoopSettings(threshold_quantile=0.0)
    labels = list(range(3 * MAX_REFERENCE_FRAMES))
    picked = reference_frames(labels)
    assert len(picked) == MAX_REFERENCE_FRAMES and picked[0] == 0 and picked[-1] == labels[-1]
    assert reference_frames(labels[:5]) == labels[:5]
