"""Fit the Auto router's weights (`app.core.routing.classifier.WEIGHTS`, `PLAN_AT`) on the
training part of routing_prompts.tsv, never the held-out part, and print them to paste
into the classifier. The line is drawn where cross-validation on the training part keeps
single-step prompts sent to planning under 3% (the test allows 5% on the held-out part).

    .venv/bin/python tests/data/fit_router.py
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[2]))
from app.core.routing.classifier import features  # noqa: E402

DATA = Path(__file__).with_name("routing_prompts.tsv")
FALSE_PLAN_GOAL = 0.03
FOLDS = 5


def training_rows() -> list[tuple[bool, str]]:
    rows = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        label, prompt = line.split("\t")
        if hashlib.sha256(prompt.encode()).digest()[0] % 3 != 0:  # not held out
            rows.append((label == "plan", prompt))
    return rows


def fit(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Logistic regression by gradient descent, the bias (column 0) not penalised."""
    w = np.zeros(x.shape[1])
    for _ in range(4000):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) / len(y) + l2 * np.r_[0.0, w[1:]]
        w -= 0.5 * grad
    return w


def main() -> None:
    rows = training_rows()
    names = list(features("x"))
    x = np.array([[features(p)[n] for n in names] for _, p in rows])
    y = np.array([float(plan) for plan, _ in rows])
    folds = np.arange(len(rows)) % FOLDS
    best: tuple[float, float, float] | None = None
    for l2 in (0.001, 0.003, 0.01, 0.03, 0.1):
        scores = np.zeros(len(rows))
        for k in range(FOLDS):
            w = fit(x[folds != k], y[folds != k], l2)
            scores[folds == k] = 1 / (1 + np.exp(-(x[folds == k] @ w)))
        for line in np.arange(0.30, 0.90, 0.01):
            plans = scores >= line
            false_plan = plans[y == 0].mean()
            accuracy = (plans == (y == 1)).mean()
            if false_plan <= FALSE_PLAN_GOAL and (best is None or accuracy > best[0]):
                best = (accuracy, l2, line)
    assert best is not None, "no line keeps false plans under the goal"
    accuracy, l2, line = best
    w = fit(x, y, l2)
    print(f"cross-validated on {len(rows)} training prompts: accuracy {accuracy:.3f} "
          f"(l2 {l2}, line {line:.2f})")
    print("WEIGHTS: dict[str, float] = {")
    print("    " + ", ".join(f'"{n}": {v:.2f}' for n, v in zip(names, w, strict=True)) + ",")
    print("}")
    print(f"PLAN_AT = {line:.2f}")


if __name__ == "__main__":
    main()
