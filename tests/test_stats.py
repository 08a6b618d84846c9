"""sweep.report.stats on textbook examples and simulated experiments: numpy only, no training, a few seconds."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.special import expit

from sweep.report.stats import (
    MCNEMAR,
    PINNED_T,
    SEEDS_T,
    compare,
    expected_max,
    holm,
    mcnemar,
    paired_correct,
    paired_t,
    pinned_test_set_t,
    t_p_value,
)


def test_mcnemar_ten_discordant_pairs_all_one_way():
    """b = 10, c = 0: under H0 each discordant pair is a fair coin, P(10 heads of 10) twice = 2 / 1024."""
    correct = np.ones(50, dtype=bool)
    other = correct.copy()
    other[:10] = False
    assert mcnemar(correct, other) == (10, 0, pytest.approx(2 / 1024))
    assert mcnemar(other, correct) == (0, 10, pytest.approx(2 / 1024))
    assert mcnemar(correct, correct) == (0, 0, 1.0)  # no discordant pair: no evidence either way


def test_mcnemar_is_the_exact_binomial_test_of_b_out_of_b_plus_c():
    from scipy.stats import binomtest

    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.random(300) < rng.random(), rng.random(300) < rng.random()
        n_b, n_c, p = mcnemar(a, b)
        assert p == pytest.approx(binomtest(n_b, n_b + n_c, 0.5).pvalue if n_b + n_c else 1.0, rel=1e-9)


def test_paired_t_on_students_sleep_data():
    """Cushny & Peebles' sleep data (Student, 1908): extra hours of sleep, drug 2 minus drug 1, for ten
    patients. R's t.test(..., paired = TRUE): t = 4.0621, df = 9, p = 0.002833."""
    differences = [1.2, 2.4, 1.3, 1.3, 0.0, 1.0, 1.8, 0.8, 4.6, 1.4]
    assert paired_t(differences) == pytest.approx(0.002833, abs=5e-7)
    assert paired_t([-d for d in differences]) == pytest.approx(0.002833, abs=5e-7)  # two-sided


def test_paired_t_with_two_seeds_needs_a_large_ratio():
    """df = 1: the 97.5% t quantile is 12.706, so two differences of 0.010 and 0.012 (mean 0.011, standard
    error 0.001, t = 11) are not significant, while a normal approximation would call it p ~ 1e-28."""
    assert paired_t([0.010, 0.012]) == pytest.approx(0.0577, abs=1e-4)
    assert paired_t([0.010, 0.010]) == 0.0 and paired_t([0.0, 0.0]) == 1.0  # no spread at all


def test_holm_on_four_p_values():
    """Sorted 0.005, 0.01, 0.03, 0.04 are multiplied by 4, 3, 2, 1 (0.02, 0.03, 0.06, 0.04) and made
    non-decreasing (0.04 -> 0.06); R's p.adjust(c(.01, .04, .03, .005), "holm") = .03 .06 .06 .02.
    At 0.05 two of four survive, where the uncorrected p-values would call all four significant."""
    p = [0.01, 0.04, 0.03, 0.005]
    adjusted = holm(p)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert list(adjusted < 0.05) == [True, False, False, True]
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02]) and len(holm([])) == 0  # one test: nothing to correct


def test_pinned_test_set_with_identical_seeds_is_a_test_over_examples():
    """k seeds that all give the same two models add nothing: the paired t over seeds sees no spread at
    all (p = 0 for any difference), while the pinned test keeps the variance of the per-example
    differences over the test set, var(d_i) / n, the one a single pair of models has."""
    rng = np.random.default_rng(1)
    a, b = rng.random(2000) < 0.88, rng.random(2000) < 0.87
    a3, b3 = np.tile(a, (3, 1)), np.tile(b, (3, 1))
    d = a.astype(float) - b
    assert paired_t((a3.mean(axis=1) - b3.mean(axis=1)).tolist()) == 0.0
    assert pinned_test_set_t(a3, b3) == pytest.approx(t_p_value(d.mean(), d.var(ddof=1) / len(d), 2))


def run(seed, key, correct):
    return SimpleNamespace(seed=seed, predictions=(key, np.asarray(correct, dtype=bool)))


def test_runs_pair_by_seed_and_on_a_pinned_split_in_seed_order():
    a = [run(1, "split1", [1, 1, 0]), run(2, "split2", [1, 0, 0])]
    b = [run(2, "split2", [0, 0, 0]), run(1, "split1", [1, 1, 1]), run(3, "split3", [1, 1, 1])]
    assert [(key, list(x), list(y)) for key, x, y in paired_correct(a, b)] == [
        ("split1", [1, 1, 0], [1, 1, 1]),
        ("split2", [1, 0, 0], [0, 0, 0]),
    ]
    # seeds 1, 2 against 3, 4 on one pinned test set: independent runs, paired in seed order
    pinned = paired_correct([run(2, "p", [0, 1]), run(1, "p", [1, 1])], [run(3, "p", [0, 0]), run(4, "p", [1, 0])])
    assert [(list(x), list(y)) for _, x, y in pinned] == [([1, 1], [0, 0]), ([0, 1], [1, 0])]
    # different test sets and no common seed: nothing to pair
    assert paired_correct([run(1, "s1", [1])], [run(2, "s2", [1])]) == []


def test_compare_picks_the_test_from_the_seeds_and_test_sets():
    rng = np.random.default_rng(2)
    draws = [rng.random(500) < 0.9 for _ in range(6)]
    one = compare([("k", draws[0], draws[1])])
    assert one["test"] == MCNEMAR and one["p_value"] == mcnemar(draws[0], draws[1])[2]
    pinned = compare([("k", draws[0], draws[1]), ("k", draws[2], draws[3]), ("k", draws[4], draws[5])])
    assert pinned["test"] == PINNED_T and pinned["seed_pairs"] == 3 and pinned["examples"] == 500
    per_seed = compare([("s1", draws[0], draws[1]), ("s2", draws[2], draws[3])])
    assert per_seed["test"] == SEEDS_T
    assert per_seed["p_value"] == paired_t([draws[0].mean() - draws[1].mean(), draws[2].mean() - draws[3].mean()])
    assert compare([]) is None


def null_experiment(rng, seeds=3, examples=5000, preference=1.0, seed_shift=0.1):
    """Two equally accurate cells on one pinned test set: correct[cell][seed, example] drawn from a logit =
    example difficulty (shared) + the cell's own per-example preference (the same for all of its seeds,
    as fine-tuned models keep theirs) + a per-run shift (seeds move a model's overall accuracy). The
    preferences of both cells come from one distribution: neither configuration is better on average,
    though on this one test set the two differ by chance, as they would on any test set."""
    difficulty = rng.normal(2.2, 1.5, examples)  # about 85% accuracy
    cells = []
    for _ in range(2):
        logit = difficulty + rng.normal(0, preference, examples) + rng.normal(0, seed_shift, (seeds, 1))
        cells.append(rng.random((seeds, examples)) < expit(logit))
    return cells


def false_positive_rates(experiments=300, **scenario):
    """Share of null experiments called significant at 0.05: (pinned test set t, pooled McNemar)."""
    rng = np.random.default_rng(10)
    hits = np.zeros(2)
    for _ in range(experiments):
        a, b = null_experiment(rng, **scenario)
        hits += [pinned_test_set_t(a, b) < 0.05, mcnemar(a.ravel(), b.ravel())[2] < 0.05]
    return hits / experiments


@pytest.mark.parametrize(
    "scenario",
    [dict(seeds=3), dict(seeds=2), dict(seeds=5), dict(seeds=3, preference=1.5, seed_shift=0.0)],
    ids=["3 seeds", "2 seeds", "5 seeds", "strong preferences, no seed shift"],
)
def test_null_experiments_keep_the_false_positive_rate_where_pooled_mcnemar_does_not(scenario):
    """Why the tests are seed-aware: pooling seeds into one McNemar test counts each example's persistent
    preference once per seed; on equally good cells it calls many experiments significant
    (12% to 47% here; the issue measured 14% to 26%). The pinned test set t stays at or below the 5% level."""
    seed_aware, pooled_mcnemar = false_positive_rates(**scenario)
    print(f"{scenario}: false-positive rate at 0.05: seed-aware {seed_aware:.3f}, pooled McNemar {pooled_mcnemar:.3f}")
    assert seed_aware <= 0.08
    assert pooled_mcnemar >= 0.10


def test_a_plain_paired_t_over_seeds_treats_a_pinned_test_set_as_fixed():
    """Why pinned_test_set_t widens the paired t: with strong per-example preferences and little seed
    shift, the seeds agree with each other about this one test set, and the plain paired t over their
    accuracy differences calls the chance difference of the test set a difference of configurations."""
    rng = np.random.default_rng(10)
    plain, widened = np.zeros(300, dtype=bool), np.zeros(300, dtype=bool)
    for i in range(300):
        a, b = null_experiment(rng, seeds=5, preference=1.5, seed_shift=0.0)
        plain[i], widened[i] = paired_t(a.mean(axis=1) - b.mean(axis=1)) < 0.05, pinned_test_set_t(a, b) < 0.05
    print(f"false-positive rate at 0.05: plain paired t {plain.mean():.3f}, pinned test set t {widened.mean():.3f}")
    assert plain.mean() >= 0.10 and widened.mean() <= 0.08


def test_null_experiments_with_a_test_split_per_seed_keep_the_level():
    """Split following the seed: each seed pair meets its own test examples, so the seed pairs' accuracy
    differences are independent and the plain paired t over them holds its level (compare's SEEDS_T)."""
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(300):
        pairs = [(f"split{s}", *(cell[0] for cell in null_experiment(rng, seeds=1))) for s in range(3)]
        result = compare(pairs)
        hits += result["test"] == SEEDS_T and result["p_value"] < 0.05
    print(f"false-positive rate at 0.05, a split per seed: {hits / 300:.3f}")
    assert hits / 300 <= 0.08


def test_expected_max_is_the_mean_at_one_trial_and_rises_to_at_most_the_best():
    """Dodge et al.'s estimator by hand for [0.5, 0.7, 0.6, 0.9]: sorted, the i-th score is the best of
    two draws with probability (2i - 1) / 16."""
    mean, std = expected_max([0.5, 0.7, 0.6, 0.9])
    assert mean[0] == pytest.approx(0.675) and std[0] == pytest.approx(np.std([0.5, 0.7, 0.6, 0.9]))
    assert mean[1] == pytest.approx((0.5 * 1 + 0.6 * 3 + 0.7 * 5 + 0.9 * 7) / 16)
    second_moment = (0.25 * 1 + 0.36 * 3 + 0.49 * 5 + 0.81 * 7) / 16
    assert std[1] == pytest.approx(np.sqrt(second_moment - mean[1] ** 2))
    assert list(mean) == sorted(mean) and mean[-1] < 0.9
    tied, spread = expected_max([0.8, 0.8, 0.8])
    assert tied == pytest.approx([0.8] * 3) and spread == pytest.approx([0.0] * 3, abs=1e-7)
