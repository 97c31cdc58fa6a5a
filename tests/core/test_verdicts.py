"""The verdict readings, the rule register and the seed-pair bootstrap."""
import numpy as np
import pytest

from diffred.core import verdicts as V
from diffred.core.stats import seed_pair_bootstrap


def test_side_reads_the_interval_and_refuses_a_missing_one():
    assert V.side(0.1, 0.3) == "above" and V.side(-0.3, -0.1) == "below"
    assert V.side(-0.1, 0.3) == "inconclusive"
    assert V.side(float("nan"), float("nan")) == "inconclusive"          # one run: no interval
    assert V.side(0.1, float("inf")) == "inconclusive"
    assert V.side(0.06, 0.08, bound=0.05) == "above" and V.side(0.01, 0.04, 0.05) == "below"
    assert V.yes_if_above(0.1, 0.3) == "yes" and V.yes_if_above(-0.3, -0.1) == "no"
    assert V.yes_if_above(float("nan"), 0.2) == "inconclusive"


def test_equivalence_needs_the_whole_interval_inside_the_margin():
    assert V.equivalence(-0.01, 0.02, 0.05) == "equivalent"
    assert V.equivalence(-0.01, 0.07, 0.05) == "inconclusive"   # covers 0, yet not equivalent
    assert V.equivalence(0.06, 0.09, 0.05) == "different"
    assert V.equivalence(float("nan"), float("nan"), 0.05) == "inconclusive"
    with pytest.raises(ValueError, match="margin must be > 0, got 0"):
        V.equivalence(0, 0, 0)


def test_all_of_needs_every_part():
    assert V.all_of(["yes", "yes"]) == "yes" and V.all_of(["yes", "no"]) == "no"
    assert V.all_of(["yes", "inconclusive"]) == "inconclusive"
    assert V.all_of([]) == "inconclusive"


def test_a_rule_is_declared_once_with_its_code_and_history():
    name = "test rule (not in the book)"
    try:
        @V.declared(name, "9", "a rule", fixed="2026-12-03",
                    changes=[V.Change("2026-12-04", "old", "why", True, "abc123")])
        def rule_code():
            return "yes"
        assert rule_code.rule == name and V.RULES[name].where.endswith("rule_code")
        row = V.ledger([V.RULES[name]]).iloc[0]
        assert row.fixed == "2026-12-03" and "(after results)" in row.changed
        assert "was 'old'" in row.changed and "abc123" in row.changed

        with pytest.raises(ValueError, match="declared twice"):
            @V.declared(name, "9", "another", fixed="2026-12-03")
            def other_code():
                return "no"
    finally:
        V.RULES.pop(name, None)


def test_seed_pair_bootstrap_resamples_seeds_and_has_no_interval_from_one_pair():
    # one pair, or two seeds: the resample is that pair, so there is no interval
    m, lo, hi = seed_pair_bootstrap({(0, 1): 0.3})
    assert m == 0.3 and np.isnan(lo) and np.isnan(hi)
    assert np.isnan(seed_pair_bootstrap({(0, 1): 0.3, (1, 0): 0.2})[1])
    # a clear contrast over 4 seeds: the interval excludes 0 and holds the estimate
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    near = {p: 0.9 + 0.01 * p[0] for p in pairs}
    far = {p: 0.2 + 0.01 * p[1] for p in pairs}
    d, lo, hi = seed_pair_bootstrap(near, far)
    assert 0 < lo <= d <= hi
    # equal-seed pairs (i, i) weigh their seed's count
    same = {(s, s): float(s) for s in range(5)}
    m, lo, hi = seed_pair_bootstrap(same)
    assert m == 2.0 and 0 <= lo < 2.0 < hi <= 4
    # deterministic: the same draws every call
    assert seed_pair_bootstrap(near, far) == seed_pair_bootstrap(near, far)


def test_paired_gap_bootstrap_carries_test_image_noise_of_the_full_probe():
    from diffred.core.stats import paired_gap_bootstrap
    rng = np.random.default_rng(0)
    full = rng.random(1000) < 0.80
    # subsets that err on 5% more images than the full probe, differently per seed
    subs = np.stack([full & (rng.random(1000) > 0.05) for _ in range(5)])
    out = paired_gap_bootstrap(full, subs, draws=500)
    assert out["absolute_lo"] < out["absolute"] < out["absolute_hi"]
    assert out["relative"] == pytest.approx(1 - subs.mean() / full.mean())
    assert 0 < out["relative_lo"] < out["relative_hi"] < 0.2
    # the interval is wider than the subsets' spread alone: the images are resampled too
    per_seed = 1 - subs.mean(1) / full.mean()
    t_half = 2.776 * per_seed.std(ddof=1) / np.sqrt(5)
    assert out["relative_hi"] - out["relative_lo"] > 2 * t_half
    # identical probes: a gap of exactly 0 with a degenerate interval at 0
    same = paired_gap_bootstrap(full, np.stack([full] * 3), draws=200)
    assert same["relative"] == 0 and abs(same["relative_lo"]) + abs(same["relative_hi"]) < 1e-12
    one = paired_gap_bootstrap(full, subs[:1])
    assert np.isnan(one["relative_lo"])                           # one subset: no interval
    with pytest.raises(ValueError, match="same images"):
        paired_gap_bootstrap(full, subs[:, :10])


def test_an_interval_reads_as_text_or_says_there_is_none():
    from diffred.core.display import interval
    assert interval(0.012, 0.034) == "[0.012, 0.034]"
    assert interval(-0.01, 0.02, "+.1f", 100) == "[-1.0, +2.0]"
    assert interval(0.1, 0.2, ".1f", sep=",\u00a0") == "[0.1,\u00a00.2]"
    for lo, hi in ((float("nan"), 0.2), (0.1, float("inf")), (None, 0.2)):
        assert interval(lo, hi) == "no interval"
    assert interval(None, None, missing="–") == "–"
