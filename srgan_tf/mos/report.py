"""Statistics of a study's scores: MOS per method, pairwise Wilcoxon signed-rank tests, test-retest agreement.

MOS and the tests use each rater's score of each test item; the repeated showings are used only for the
test-retest check (so no rating counts twice). Raters are named R1, R2, ... in the order they started: their
ids are credentials and never appear in a report.

Pairing for the Wilcoxon tests (Ledig et al. used paired two-sided Wilcoxon signed-rank tests):
- "rater_image" (default): one pair per rater and image, the rater's scores of method A's and method B's
  version of that image. This is the pairing the design provides, since every rater scores every version of
  every image: the same person judged the same content, so both rater leniency and image difficulty cancel
  out of the difference. Its pairs are not independent across images of one rater, which makes p-values
  somewhat optimistic when a few raters dominate.
- "rater": one pair per rater, the means of the rater's scores of A and of B over the images the rater scored
  under both. Pairs are independent, so the test is conservative, but with few raters it has little power
  (with 5 raters or fewer no two-sided p can fall below 0.05).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srgan_tf.images import atomic_write
from srgan_tf.mos.study import SCORE_LABELS, Study

PAIRINGS = ("rater_image", "rater")
ALPHA = 0.05


@dataclass(frozen=True)
class Rating:
    rater: str  # R1, R2, ...
    method: str
    image: str
    score: int


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def method_summary(scores: list[int]) -> dict:
    """MOS (mean), sample standard deviation, count, median and the histogram of scores 1..5."""
    a = np.asarray(scores, dtype=np.float64)
    return {
        "mos": _round(a.mean()) if a.size else None,
        "sd": _round(a.std(ddof=1)) if a.size > 1 else None,
        "n": int(a.size),
        "median": _round(float(np.median(a))) if a.size else None,
        "histogram": {str(s): int((a == s).sum()) for s in SCORE_LABELS},
    }


def paired_scores(ratings: list[Rating], a: str, b: str, pairing: str) -> tuple[np.ndarray, np.ndarray]:
    """The paired samples (A's, B's) for the Wilcoxon test, per `pairing` (see the module docstring)."""
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    by_key: dict[str, dict[tuple[str, str], int]] = {a: {}, b: {}}
    for r in ratings:
        if r.method in by_key:
            by_key[r.method][(r.rater, r.image)] = r.score
    common = sorted(by_key[a].keys() & by_key[b].keys())
    if pairing == "rater_image":
        return (np.array([by_key[a][k] for k in common], np.float64),
                np.array([by_key[b][k] for k in common], np.float64))
    per_rater: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for k in common:
        per_rater[k[0]].append((by_key[a][k], by_key[b][k]))
    raters = sorted(per_rater)
    return (np.array([np.mean([p[0] for p in per_rater[r]]) for r in raters], np.float64),
            np.array([np.mean([p[1] for p in per_rater[r]]) for r in raters], np.float64))


def wilcoxon_test(x: np.ndarray, y: np.ndarray, alpha: float = ALPHA) -> dict:
    """Two-sided Wilcoxon signed-rank test of x - y (scipy.stats.wilcoxon: zero differences discarded,
    exact or permutation p-values for small samples, normal approximation for large ones). With no pair, or
    no pair that differs, there is nothing to test: p is None and the result is not significant."""
    from scipy import stats

    d = x - y
    result = {"n_pairs": int(d.size), "n_nonzero": int(np.count_nonzero(d)),
              "mean_difference": _round(d.mean()) if d.size else None, "statistic": None, "p": None}
    if d.size == 0:
        result["note"] = "no pairs"
    elif not np.any(d):
        result["note"] = "all pairs tied"
    else:
        test = stats.wilcoxon(x, y, alternative="two-sided", zero_method="wilcox")
        result["statistic"] = _round(test.statistic)
        result["p"] = _round(test.pvalue, 6)
    result["significant"] = result["p"] is not None and result["p"] < alpha
    return result


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None), for readers who want a family-wise error rate."""
    valid = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(valid):
        running = max(running, min(1.0, (len(valid) - rank) * p))
        adjusted[i] = _round(running, 6)
    return adjusted


def test_retest(pairs: list[tuple[str, int, int]]) -> dict:
    """Agreement of (rater, first score, repeat score) pairs: exact and within-one agreement, mean absolute
    difference, Spearman's rho (None when undefined: fewer than 3 pairs or a constant side), per rater too."""
    from scipy import stats

    first = np.array([p[1] for p in pairs], np.float64)
    again = np.array([p[2] for p in pairs], np.float64)
    diff = np.abs(first - again)
    rho = None
    if len(pairs) >= 3 and np.ptp(first) > 0 and np.ptp(again) > 0:
        rho = _round(stats.spearmanr(first, again).statistic)
    per_rater = []
    for rater in sorted({p[0] for p in pairs}, key=lambda r: int(r[1:])):
        d = np.array([abs(p[1] - p[2]) for p in pairs if p[0] == rater], np.float64)
        per_rater.append({"rater": rater, "pairs": int(d.size), "exact_agreement": _round((d == 0).mean()),
                          "mean_abs_difference": _round(d.mean())})
    return {
        "pairs": len(pairs),
        "exact_agreement": _round((diff == 0).mean()) if pairs else None,
        "within_one": _round((diff <= 1).mean()) if pairs else None,
        "mean_abs_difference": _round(diff.mean()) if pairs else None,
        "spearman": rho,
        "per_rater": per_rater,
    }


def compute_report(study: Study, pairing: str = "rater_image", complete_only: bool = False,
                   alpha: float = ALPHA) -> dict:
    """The report dict (see report.json) of the scores stored in `study` so far."""
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {', '.join(PAIRINGS)}, got {pairing!r}")
    store = study.store
    raters = store.raters()
    label = {r.rater_id: f"R{k}" for k, r in enumerate(raters, 1)}
    assigned = store.assignment_counts()
    scores = store.scores()
    scored = defaultdict(int)
    for s in scores:
        scored[s.rater_id] += 1
    complete = {r for r, n in assigned.items() if n and scored[r] == n}
    if complete_only:
        scores = [s for s in scores if s.rater_id in complete]

    by_item = {(s.rater_id, s.item_id): s.score for s in scores}
    ratings, retest = [], []
    for s in scores:
        item = study.items[s.item_id]
        if item.role == "test":
            ratings.append(Rating(label[s.rater_id], item.method, item.image, s.score))
        elif item.role == "repeat" and (s.rater_id, item.repeat_of) in by_item:
            retest.append((label[s.rater_id], by_item[(s.rater_id, item.repeat_of)], s.score))

    methods = study.methods
    per_method = [{"method": m, **method_summary([r.score for r in ratings if r.method == m])} for m in methods]
    tests = []
    for a, b in itertools.combinations(methods, 2):
        x, y = paired_scores(ratings, a, b, pairing)
        tests.append({"a": a, "b": b, **wilcoxon_test(x, y, alpha)})
    for t, p in zip(tests, holm([t["p"] for t in tests]), strict=True):
        t["p_holm"] = p

    return {
        "study": {"title": study.title, "study_id": study.study_id, "created": study.manifest.get("created"),
                  "scale": study.manifest.get("scale"), "methods": study.manifest["methods"],
                  "images": len(study.manifest.get("images", [])), "lr": study.manifest.get("lr")},
        "raters": {"started": len(raters), "with_scores": len({s.rater_id for s in scores}),
                   "complete": len(complete), "included": "complete raters only" if complete_only else "all"},
        "ratings": len(ratings),
        "methods": per_method,
        "wilcoxon": {"pairing": pairing, "alternative": "two-sided", "zero_method": "wilcox", "alpha": alpha,
                     "tests": tests},
        "test_retest": test_retest(retest),
    }


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def format_markdown(report: dict, plot_file: str | None = None) -> str:
    """The report as Markdown: MOS table, pairwise tests with significance marked, test-retest agreement."""
    r = report["raters"]
    w = report["wilcoxon"]
    lines = [
        f"# MOS: {report['study']['title']}",
        "",
        f"{r['with_scores']} raters with scores ({r['complete']} finished, {r['started']} started; "
        f"included: {r['included']}), {report['ratings']} ratings of test items, "
        f"{report['study']['images']} images, {report['study']['scale']}x.",
        "",
        "| method | MOS | SD | n | median | 1 | 2 | 3 | 4 | 5 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in report["methods"]:
        hist = " | ".join(str(m["histogram"][str(s)]) for s in SCORE_LABELS)
        lines.append(f"| {m['method']} | {_num(m['mos'], 3)} | {_num(m['sd'], 3)} | {m['n']} | "
                     f"{_num(m['median'], 1)} | {hist} |")
    if plot_file:
        lines += ["", f"![Distribution of scores per method]({plot_file})"]
    pairing = ("one pair per rater and image" if w["pairing"] == "rater_image"
               else "one pair per rater: the rater's mean scores over images scored under both methods")
    lines += [
        "",
        f"## Wilcoxon signed-rank tests (paired, two-sided; {pairing})",
        "",
        f"\\* marks p < {w['alpha']}. Holm's adjustment for the {len(w['tests'])} comparisons is given beside.",
        "",
        "| A | B | pairs | non-zero | mean(A - B) | W | p | p (Holm) | |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for t in w["tests"]:
        mark = "*" if t["significant"] else (t.get("note") or "")
        lines.append(f"| {t['a']} | {t['b']} | {t['n_pairs']} | {t['n_nonzero']} | {_num(t['mean_difference'], 3)} | "
                     f"{_num(t['statistic'], 1)} | {_p(t['p'])} | {_p(t['p_holm'])} | {mark} |")
    rt = report["test_retest"]
    lines += [
        "",
        "## Test-retest (items shown twice to each rater)",
        "",
        f"{rt['pairs']} pairs: exact agreement {_num(rt['exact_agreement'], 3)}, within one point "
        f"{_num(rt['within_one'], 3)}, mean absolute difference {_num(rt['mean_abs_difference'], 3)}, "
        f"Spearman's rho {_num(rt['spearman'], 3)}.",
    ]
    if rt["per_rater"]:
        lines += ["", "| rater | pairs | exact agreement | mean abs. difference |", "|---|---:|---:|---:|"]
        lines += [f"| {p['rater']} | {p['pairs']} | {_num(p['exact_agreement'], 3)} | "
                  f"{_num(p['mean_abs_difference'], 3)} |" for p in rt["per_rater"]]
    return "\n".join(lines) + "\n"


REPORT_FILES = {"json": "report.json", "markdown": "report.md", "plot": "mos_distribution.png"}


def write_report(study: Study, out_dir: str | os.PathLike, pairing: str = "rater_image",
                 complete_only: bool = False, alpha: float = ALPHA) -> dict:
    """Computes the report and writes report.json, report.md and mos_distribution.png (each atomically) to
    `out_dir`; returns the report dict."""
    from srgan_tf.mos.plot import save_distribution_plot

    out_dir = Path(out_dir)
    report = compute_report(study, pairing=pairing, complete_only=complete_only, alpha=alpha)
    report["files"] = dict(REPORT_FILES)
    save_distribution_plot(report, out_dir / REPORT_FILES["plot"])
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(out_dir / REPORT_FILES["json"], lambda tmp: Path(tmp).write_text(text))
    markdown = format_markdown(report, plot_file=REPORT_FILES["plot"])
    atomic_write(out_dir / REPORT_FILES["markdown"], lambda tmp: Path(tmp).write_text(markdown))
    return report
