"""`textcls baseline`: what a linear model on word n-grams scores on the same data, the bar a transformer must clear.

Two methods, both scikit-learn on hashed n-gram counts (for regression data, tfidf-lr fits ridge regression on the
TF-IDF features; for multi-label data, one logistic regression per label; nbsvm is single-label only):
- tfidf-lr: TF-IDF (sublinear tf, idf from train) + logistic regression.
- nbsvm: Wang & Manning's (2012) NBSVM: binary n-gram features scaled by their naive Bayes log-count ratio, then a
  linear SVM; one such classifier per class against the rest when there are more than two. Their interpolation
  towards the mean weight (beta < 1) is left out: with the SVM's C tuned, beta = 0.25 lowered IMDB accuracy by a point
  in a trial here.

Texts are lowercased and stripped of markup tags (IMDB's <br />); words and punctuation marks are tokens, as "!" and
"?" carry sentiment. Features are hashed (HashingVectorizer, 2^22 buckets) so that both splits are featurized in
parallel processes without a shared vocabulary: building scikit-learn's vocabulary of 1.3M IMDB n-grams in one
process takes longer than fitting either model. A text pair is two texts hashed into two halves of the features.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING

import numpy as np

from textcls.config import BaselineConfig, DataConfig
from textcls.errors import TextclsError

if TYPE_CHECKING:
    import scipy.sparse as sp
    from datasets import Dataset

log = logging.getLogger("textcls")

# Against an exact vocabulary, hash collisions cost IMDB's NBSVM ~0.1 point at 2^22 (TF-IDF+LR none); 2^24 gained
# no more than 0.05 and fits slower.
HASH_FEATURES = 2 ** 22
DEFAULT_C = {"tfidf-lr": 10.0, "nbsvm": 0.01}  # the best of 3, 10, 30, 100 (0.003, 0.01, 0.03) on IMDB validation
TOKEN_PATTERN = r"(?u)\w+|[^\w\s]"
_MARKUP = re.compile(r"<[^<>]{0,40}>")
CHUNK = 2000  # texts per featurizing task


def _normalize(text: str) -> str:
    return _MARKUP.sub(" ", text.lower())


def _vectorizer(ngrams: int):
    from sklearn.feature_extraction.text import HashingVectorizer
    return HashingVectorizer(ngram_range=(1, ngrams), token_pattern=TOKEN_PATTERN, preprocessor=_normalize,
                             lowercase=False, alternate_sign=False, norm=None, n_features=HASH_FEATURES,
                             dtype=np.float32)


def featurize(splits: dict[str, "Dataset"], ngrams: int) -> dict[str, "sp.csr_matrix"]:
    """n-gram counts of every split's texts (N, 2^22), or (N, 2^23) for pairs (text, then pair), in parallel."""
    import scipy.sparse as sp
    from joblib import Parallel, delayed

    vectorizer = _vectorizer(ngrams)
    columns = [c for c in ("text", "text_pair") if c in next(iter(splits.values())).column_names]
    tasks = [(name, column, start) for name, ds in splits.items() for column in columns
             for start in range(0, len(ds), CHUNK)]
    jobs = min(len(tasks), os.cpu_count() or 1)
    parts = Parallel(n_jobs=jobs)(delayed(vectorizer.transform)(splits[name][column][start:start + CHUNK])
                                  for name, column, start in tasks)
    by_split: dict[str, dict[str, list]] = {name: {c: [] for c in columns} for name in splits}
    for (name, column, _), part in zip(tasks, parts):
        by_split[name][column].append(part)
    return {name: sp.hstack([sp.vstack(by_split[name][c]) for c in columns]).tocsr() for name in splits}


class TfidfLogisticRegression:
    """TF-IDF weighting (fit on train) + L2 logistic regression (one against the rest for > 2 classes)."""

    def __init__(self, c: float):
        from sklearn.feature_extraction.text import TfidfTransformer

        self.tfidf = TfidfTransformer(sublinear_tf=True)
        self.c = c

    def fit(self, x: "sp.csr_matrix", y: np.ndarray) -> "TfidfLogisticRegression":
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        # liblinear's dual solver is the fastest here by far (millions of features, thousands of texts); it fits
        # two classes only, so more are fit one against the rest.
        model = LogisticRegression(C=self.c, solver="liblinear", dual=True, max_iter=1000)
        self.model = model if len(np.unique(y)) == 2 else OneVsRestClassifier(model)
        self.model.fit(self.tfidf.fit_transform(x), y)
        self.classes = self.model.classes_
        return self

    def logits(self, x: "sp.csr_matrix") -> np.ndarray:
        """(N, len(self.classes)) log-probabilities: their cross-entropy is the model's log loss."""
        return np.log(self.model.predict_proba(self.tfidf.transform(x)))


class NBSVM:
    """Binary features scaled by r = log(p / |p|_1) - log(q / |q|_1), p and q the smoothed feature counts of the
    class and of the rest (alpha = 1), then an L2-regularized linear SVM (squared hinge)."""

    alpha = 1.0

    def __init__(self, c: float):
        self.c = c
        self.ratios: list[np.ndarray] = []
        self.svms: list = []

    def _ratio(self, x: "sp.csr_matrix", positive: np.ndarray) -> np.ndarray:
        p = np.asarray(x[positive].sum(0)).ravel() + self.alpha
        q = np.asarray(x[~positive].sum(0)).ravel() + self.alpha
        return (np.log(p / p.sum()) - np.log(q / q.sum())).astype(np.float32)

    def fit(self, x: "sp.csr_matrix", y: np.ndarray) -> "NBSVM":
        from sklearn.svm import LinearSVC

        x = x.sign()
        classes = np.unique(y)
        # Two classes: one classifier, of the second class against the first (scikit-learn's convention).
        for c in classes[1:] if len(classes) == 2 else classes:
            r = self._ratio(x, y == c)
            self.ratios.append(r)
            self.svms.append(LinearSVC(C=self.c).fit(x.multiply(r).tocsr(), y == c))
        self.classes = classes
        return self

    def logits(self, x: "sp.csr_matrix") -> np.ndarray:
        """(N, len(self.classes)) decision values (not log-probabilities: an SVM has no loss to report)."""
        x = x.sign()
        scores = np.stack([svm.decision_function(x.multiply(r).tocsr()) for r, svm in zip(self.ratios, self.svms)],
                          axis=1)
        return np.concatenate([np.zeros_like(scores), scores], axis=1) if len(self.classes) == 2 else scores


class TfidfRidge(TfidfLogisticRegression):
    """Regression: the same TF-IDF weighting + ridge regression (L2, alpha = 1 / C)."""

    def fit(self, x: "sp.csr_matrix", y: np.ndarray) -> "TfidfRidge":
        from sklearn.linear_model import Ridge

        self.model = Ridge(alpha=1.0 / self.c).fit(self.tfidf.fit_transform(x), y)
        self.classes = np.zeros(1, dtype=np.int64)  # one output
        return self

    def logits(self, x: "sp.csr_matrix") -> np.ndarray:
        """(N, 1) predicted values."""
        return self.model.predict(self.tfidf.transform(x)).reshape(-1, 1)


class TfidfMultiLabel(TfidfLogisticRegression):
    """Multi-label: the same TF-IDF weighting + one L2 logistic regression per label (binary relevance)."""

    def fit(self, x: "sp.csr_matrix", y: np.ndarray) -> "TfidfMultiLabel":
        import warnings

        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        self.model = OneVsRestClassifier(LogisticRegression(C=self.c, solver="liblinear", dual=True, max_iter=1000))
        with warnings.catch_warnings():  # a label that train never (or always) has: a constant prediction, said
            warnings.simplefilter("ignore", UserWarning)
            self.model.fit(self.tfidf.fit_transform(x), y)
        self.classes = np.arange(y.shape[1])
        return self

    def logits(self, x: "sp.csr_matrix") -> np.ndarray:
        """(N, L) log-odds of each label: their sigmoid is the label's probability."""
        p = np.clip(self.model.predict_proba(self.tfidf.transform(x)), 1e-7, 1 - 1e-7)
        return np.log(p) - np.log1p(-p)


METHODS = {"tfidf-lr": TfidfLogisticRegression, "nbsvm": NBSVM}
# Other problem types: TF-IDF + ridge regression, TF-IDF + one logistic regression per label; NBSVM classifies.
PROBLEM_METHODS = {"regression": {"tfidf-lr": TfidfRidge}, "multi-label": {"tfidf-lr": TfidfMultiLabel}}


def _labels(ds: "Dataset", split: str, data: str, num_labels: int = 0) -> np.ndarray:
    """(N,) class ids, (N,) regression targets, or (N, num_labels) 0/1 rows of a multi-label split."""
    from textcls.data.sources import is_labelled, multi_hot, problem_type

    if not is_labelled(ds):
        raise TextclsError(f"split {split!r} of {data!r} has rows without a label; the baseline needs a label on "
                           f"every row of train and of the splits it is measured on")
    problem = problem_type(ds)
    if problem == "regression":
        return np.asarray(ds.with_format("numpy")["label"][:], dtype=np.float32)
    if problem == "multi-label":
        return multi_hot(ds.with_format("arrow")["label"].to_pylist(), num_labels)
    return np.asarray(ds.with_format("numpy")["label"][:])


def run_baseline(data_cfg: DataConfig, cfg: BaselineConfig, splits: list[str]) -> dict:
    """Fit `cfg.method` on the train split of `data_cfg.data` (the rows `textcls train` trains on: the same carved
    validation and subsets) and measure it on each of `splits` with evaluate's metrics. Returns {"method", "c",
    "ngrams", "data", "fit_seconds" (featurizing every split and fitting), "seconds" (and measuring), "metrics":
    {split: metrics}}."""
    import torch

    from textcls.data.sources import label_names, load_data, problem_type
    from textcls.metrics import classification_metrics, problem_metrics

    dsd = load_data(data_cfg)
    missing = [s for s in splits if s not in dsd]
    if missing:
        raise TextclsError(f"{data_cfg.data!r} has no split {', '.join(map(repr, missing))}; it has: {', '.join(dsd)}")
    names, problem = label_names(dsd), problem_type(dsd)
    methods = PROBLEM_METHODS.get(problem, METHODS)
    if cfg.method not in methods:
        what = "TF-IDF + ridge regression" if problem == "regression" else "TF-IDF + a logistic regression per label"
        raise TextclsError(f"--method {cfg.method} is single-label only; the baseline of {problem} data is "
                           f"--method {', '.join(methods)} ({what})")
    wanted = {s: dsd[s] for s in dict.fromkeys(["train", *splits])}
    labels = {s: _labels(ds, s, data_cfg.data, len(names)) for s, ds in wanted.items()}
    c = cfg.c if cfg.c is not None else DEFAULT_C[cfg.method]

    start = time.perf_counter()
    features = featurize(wanted, cfg.ngrams)
    featurized = time.perf_counter()
    model = methods[cfg.method](c).fit(features["train"], labels["train"])
    fit_seconds = time.perf_counter() - start
    log.info("baseline %s (C=%g, 1-%d-grams): featurized %d texts in %.1f s, fit in %.1f s", cfg.method, c,
             cfg.ngrams, sum(len(ds) for ds in wanted.values()), featurized - start, fit_seconds - featurized + start)
    metrics = {}
    for split in splits:
        if problem != "single-label":
            logits = torch.from_numpy(model.logits(features[split])).float()
            metrics[split] = problem_metrics(problem, logits, torch.from_numpy(labels[split]), names)
            continue
        # A label that train lacks is never predicted: its column stays far below the others.
        logits = torch.full((len(labels[split]), len(names)), -1e4)
        logits[:, torch.from_numpy(model.classes)] = torch.from_numpy(model.logits(features[split])).float()
        m = classification_metrics(logits, torch.from_numpy(labels[split]), names)
        if cfg.method == "nbsvm":
            m["loss"] = None
        metrics[split] = m
    return {"method": cfg.method, "c": c, "ngrams": cfg.ngrams, "data": data_cfg.data,
            "fit_seconds": round(fit_seconds, 2), "seconds": round(time.perf_counter() - start, 2),
            "metrics": metrics}
