"""The statistics of the comparison table: a bootstrap CI of one run's accuracy, the paired tests between
two cells, and Holm's correction over all pairs.

Which test compares two cells depends on what was repeated:

- one seed-matched pair of runs: McNemar's exact test on the test predictions. It compares two *trained
  models*; it says nothing about the configurations, whose seed-to-seed spread it never sees.
- two or more seed pairs, each on its own test set (the split follows the seed): a paired t-test over the
  seed pairs' accuracy differences. Each difference carries its own seed noise and test-set draw, so
  their spread estimates the whole variance of the mean.
- two or more seed pairs on one pinned test set (data.split_seed fixed): the same paired t-test, with the
  variance the seeds cannot see added back (see `pinned_test_set_t`).

Only numpy and scipy.special (cheap to import), so the report stays fast."""

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

ALPHA = 0.05
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 2000, 0
# the `test` column of significance.csv
MCNEMAR, SEEDS_T, PINNED_T = "mcnemar (models)", "paired t over seeds", "paired t over seeds, pinned test set"
BOOTSTRAP_SE = "paired bootstrap of squared errors (models)"  # regression runs, one per cell
# what each test tests, in the words comparison.md puts next to the table
TEST_MEANINGS = {
    MCNEMAR: "McNemar's exact test on the test predictions of one run per cell. It asks whether these two "
    "trained models differ on this test set; another seed can give another answer, so it does not "
    "test the configurations.",
    SEEDS_T: "paired t-test over the seed-matched differences in test accuracy (df = seed pairs - 1), each seed "
    "with its own test split. It tests the configurations: whether one is better on average over "
    "seeds and test sets.",
    PINNED_T: "paired t-test over the seed-matched differences in test accuracy (df = seed pairs - 1) on one "
    "pinned test set, its variance widened by the per-example differences that persist across seeds. "
    "It tests the configurations: whether one is better on average over seeds and test sets.",
    BOOTSTRAP_SE: "a paired bootstrap of the per-example squared errors of one regression run per cell "
    f"({BOOTSTRAP_RESAMPLES} resamples of the test examples): whether the two trained models' test MSE "
    "differ on this test set. Over seeds, regression runs take the paired t-tests above on their MSE.",
}


def bootstrap_ci(correct: np.ndarray) -> Tuple[float, float]:
    """95% percentile bootstrap CI of accuracy. Resampling n examples with replacement from a set with
    k correct draws Binomial(n, k/n) correct ones, so the resamples are drawn from that directly."""
    n = len(correct)
    accs = np.random.default_rng(BOOTSTRAP_SEED).binomial(n, correct.mean(), BOOTSTRAP_RESAMPLES) / n
    return tuple(np.quantile(accs, [0.025, 0.975]))


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> Tuple[int, int, float]:
    """Discordant counts b (A right, B wrong), c (A wrong, B right) and McNemar's exact p-value: the
    two-sided binomial test of b out of b+c at p=0.5 (b=c=0 -> 1). At p=0.5 the binomial is symmetric,
    so this is 2 * P(X <= min(b, c)) capped at 1, the same value as scipy.stats.binomtest(...).pvalue
    without the second of import time that scipy.stats costs."""
    from scipy.special import bdtr  # the binomial CDF

    b, c = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    return b, c, (min(1.0, 2.0 * float(bdtr(min(b, c), b + c, 0.5))) if b + c else 1.0)


def t_p_value(mean: float, variance_of_mean: float, df: float) -> float:
    """Two-sided p-value of mean / sqrt(variance_of_mean) under Student's t with df degrees of freedom;
    a zero variance gives 1 for a zero mean and 0 otherwise (every replicate agreed exactly)."""
    from scipy.special import stdtr  # Student's t CDF

    if variance_of_mean <= 0:
        return 1.0 if mean == 0 else 0.0
    return float(min(1.0, 2.0 * stdtr(df, -abs(mean) / math.sqrt(variance_of_mean))))


def paired_t(differences: Sequence[float]) -> float:
    """Paired t-test of k seed-matched accuracy differences (A - B), df = k - 1. With k = 2 to 5 the
    t quantile (12.7 at df = 1, 2.78 at df = 4) is what keeps the false-positive rate at its level:
    a normal approximation or a bootstrap over so few seeds would be far too narrow."""
    d = np.asarray(differences, dtype=float)
    return t_p_value(d.mean(), d.var(ddof=1) / len(d), len(d) - 1)


def pinned_test_set_t(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Seeds x examples: row s of correct_a / correct_b is seed pair s on one shared test set.

    Fine-tuned models keep per-example preferences across seeds, so on a pinned test set part of the
    test-set sampling noise is the same in every seed pair: the paired t-test's spread over seeds never
    sees it, and pooling the seeds into one McNemar test counts those examples k times. In the two-way
    layout d[s, i] = seed + example + residual, the variance of the mean difference is
    (MS_seeds + MS_examples - MS_residual) / (k n) (the ANOVA estimate for a crossed design), i.e. the
    paired t variance MS_seeds / (k n) plus the persistent per-example part. The degrees of freedom stay
    the seeds' k - 1: Satterthwaite's df, estimated from one or two seed df, often comes out large and
    was anti-conservative with 2 seeds in simulation; k - 1 keeps the false-positive rate at or below
    the level (conservative where the test set, not the seeds, dominates)."""
    d = np.asarray(correct_a, dtype=float) - np.asarray(correct_b, dtype=float)
    k, n = d.shape
    grand, per_seed, per_example = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_seeds = n * np.sum((per_seed - grand) ** 2) / (k - 1)
    ms_examples = k * np.sum((per_example - grand) ** 2) / (n - 1)
    residual = d - per_seed[:, None] - per_example[None, :] + grand
    ms_residual = np.sum(residual**2) / ((k - 1) * (n - 1))
    persistent = max(0.0, ms_examples - ms_residual)  # estimated k * var(per-example effect), never negative
    return t_p_value(grand, (ms_seeds + persistent) / (k * n), k - 1)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest (from 0) is multiplied
    by (m - i), made non-decreasing, capped at 1. Rejecting where adjusted < alpha keeps the chance of
    any false verdict among all m comparisons at most alpha, whatever their dependence."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, stepped)
    return adjusted


def paired_correct(runs_a: Sequence[Any], runs_b: Sequence[Any]) -> List[Tuple[Any, np.ndarray, np.ndarray]]:
    """(test-set key, correct of A, correct of B) per pair of runs that predicted the same examples.
    Runs are anything with `.seed` and `.predictions` ((test-set key, correct per example) or None).

    Each run of A pairs with the run of B of the same seed (same init and data order where the cells
    allow it). When fewer than two seeds match but every run shares one test set (a pinned split),
    the runs pair in seed order instead: runs of different cells are independent, so any pairing
    is valid, and it keeps the seeds of both cells in the test."""
    with_predictions = [r for r in (*runs_a, *runs_b) if r.predictions]
    by_seed: Dict[Any, Any] = {}
    for run in runs_b:
        by_seed.setdefault(run.seed, run)
    pairs = [(a, by_seed[a.seed]) for a in runs_a if a.seed in by_seed]
    if (
        len(pairs) < 2
        and len(with_predictions) == len(runs_a) + len(runs_b)
        and len({r.predictions[0] for r in with_predictions}) == 1
    ):
        pairs = list(zip(sorted(runs_a, key=lambda r: str(r.seed)), sorted(runs_b, key=lambda r: str(r.seed))))
    return [
        (a.predictions[0], a.predictions[1], b.predictions[1])
        for a, b in pairs
        if a.predictions and b.predictions and a.predictions[0] == b.predictions[0]
    ]


def paired_bootstrap(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of mean(a - b) = 0 by a paired bootstrap: the resampled means of the
    per-example differences, centred on their observed mean, as far from 0 as that mean or farther."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rows = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(d), (BOOTSTRAP_RESAMPLES, len(d)))
    resampled = d[rows].mean(axis=1)
    extreme = np.sum(np.abs(resampled - d.mean()) >= abs(d.mean()))
    return float((extreme + 1) / (BOOTSTRAP_RESAMPLES + 1))


def compare(pairs: List[Tuple[Any, np.ndarray, np.ndarray]]) -> Optional[Dict[str, Any]]:
    """The test between two cells from their paired predictions (see the module docstring), with
    descriptive counts: b and c are the discordant examples summed over the seed pairs. Per-example
    squared errors (regression) in place of correct flags: their mean difference is mse_diff, one run
    per cell takes a paired bootstrap, several seeds the t-tests."""
    if not pairs:
        return None
    correct_a, correct_b = [a for _, a, _ in pairs], [b for _, _, b in pairs]
    mean_diff = float(np.mean([a.mean() - b.mean() for a, b in zip(correct_a, correct_b)]))
    squared_errors = correct_a[0].dtype.kind == "f"
    if squared_errors:
        b = c = None
    else:
        b, c, p_mcnemar = mcnemar(np.concatenate(correct_a), np.concatenate(correct_b))
    if len(pairs) == 1:
        test, p = (
            (BOOTSTRAP_SE, paired_bootstrap(correct_a[0], correct_b[0])) if squared_errors else (MCNEMAR, p_mcnemar)
        )
    elif len({key for key, _, _ in pairs}) == 1:
        test, p = PINNED_T, pinned_test_set_t(np.stack(correct_a), np.stack(correct_b))
    else:
        test, p = SEEDS_T, paired_t([a.mean() - b.mean() for a, b in zip(correct_a, correct_b)])
    return {
        "test": test,
        "seed_pairs": len(pairs),
        "examples": len(correct_a[0]),
        "acc_diff": None if squared_errors else mean_diff,
        "mse_diff": mean_diff if squared_errors else None,
        "b": b,
        "c": c,
        "p_value": p,
    }


def expected_max(scores: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Dodge et al. 2019 ("Show Your Work"): the expected maximum of n trials drawn with replacement
    from the empirical distribution of a cell's N trial scores, for n = 1..N, and its standard
    deviation. With the scores sorted, the i-th is the best of n draws with probability
    (i/N)^n - ((i-1)/N)^n (ties share their group's probability). At n = 1 it is the mean."""
    ranked = np.sort(np.asarray(scores, dtype=float))
    size = len(ranked)
    rank = np.arange(1, size + 1)
    draws = np.arange(1, size + 1)[:, None]
    best_is = (rank / size) ** draws - ((rank - 1) / size) ** draws  # rows: n; columns: the i-th score
    mean = best_is @ ranked
    return mean, np.sqrt(np.maximum(best_is @ ranked**2 - mean**2, 0.0))
