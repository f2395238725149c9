"""llama-perplexity's per-token arithmetic (NLL, KL divergence against a uint16 reference row) and its summaries."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from models.bench.quality.reference import LOG_RANGE

log = logging.getLogger(__name__)


def nll_rows(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log softmax(logits)[target] per row, as perplexity.cpp's log_softmax: float32 exps summed in double."""
    rows = np.arange(len(targets))
    max_logit = logits.max(axis=1)
    work = np.subtract(logits, max_logit[:, None])
    sum_exp = np.exp(work, out=work).sum(axis=1, dtype=np.float64)
    picked = (logits[rows, targets] - max_logit).astype(np.float64)
    return -(picked - np.log(sum_exp))


class PplAccumulator:
    """Running sums of NLL and NLL^2 over scored tokens (perplexity.cpp's nll, nll2, count)."""

    def __init__(self) -> None:
        self.sum = 0.0
        self.sum2 = 0.0
        self.count = 0

    def add(self, nll: np.ndarray) -> None:
        values = nll.astype(np.float64)
        self.sum += float(values.sum())
        self.sum2 += float((values * values).sum())
        self.count += len(values)

    def summary(self) -> dict[str, float]:
        """ppl, its ± (perplexity.cpp's "Final estimate"), and the mean NLL."""
        if self.count == 0:
            return {"ppl": math.nan, "ppl_err": math.nan, "nll": math.nan}
        mean = self.sum / self.count
        var = self.sum2 / self.count - mean * mean
        ppl = math.exp(mean)
        err = math.sqrt(var / (self.count - 1)) * ppl if var > 0 and self.count > 1 else 0.0
        return {"ppl": ppl, "ppl_err": err, "nll": mean}


class KldAccumulator:
    """kl_divergence_result plus every token's KLD and Δp, kept for the median and percentiles (4 bytes each)."""

    def __init__(self, capacity: int) -> None:
        self.base = PplAccumulator()
        self.sum_nll_nll_base = 0.0
        self.sum_kld = 0.0
        self.sum_kld2 = 0.0
        self.sum_p_diff = 0.0
        self.sum_p_diff2 = 0.0
        self.sum_p_diff4 = 0.0
        self.n_same_top = 0
        self.count = 0
        self.kld_values = np.empty(capacity, dtype=np.float32)
        self.p_diff_values = np.empty(capacity, dtype=np.float32)

    def mean(self) -> tuple[float, float]:
        return _mean_and_uncertainty(self.sum_kld, self.sum_kld2, self.count)

    def same_top(self) -> tuple[float, float]:
        if self.count < 2:
            return (math.nan, math.nan)
        p = self.n_same_top / self.count
        return (p, math.sqrt(p * (1 - p) / (self.count - 1)))

    def summary(self, ppl: PplAccumulator) -> dict[str, float]:
        """llama-perplexity --kl-divergence's closing statistics; Δp and same-top as fractions (not %)."""
        kld = np.sort(self.kld_values[:self.count])
        p_diff = np.sort(self.p_diff_values[:self.count])
        mean, err = self.mean()
        log_ppl = _mean_and_uncertainty(ppl.sum, ppl.sum2, ppl.count)
        log_base = _mean_and_uncertainty(self.base.sum, self.base.sum2, self.count)
        cov = _covariance(ppl.sum, self.base.sum, self.sum_nll_nll_base, self.count)
        ratio = log_ppl[0] - log_base[0]
        ratio_err = math.sqrt(max(0.0, log_ppl[1] ** 2 + log_base[1] ** 2 - 2.0 * cov))
        mse = _mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, self.count)
        rms = math.sqrt(mse[0])
        same, same_err = self.same_top()
        n = len(kld)
        median = float(0.5 * (kld[n // 2] + kld[n // 2 - 1]) if n % 2 == 0 else kld[n // 2])
        return {
            "kld_mean": mean, "kld_err": err, "kld_median": median, "kld_p99": _percentile(kld, 0.99),
            "kld_p999": _percentile(kld, 0.999), "kld_max": float(kld[-1]), "kld_min": float(kld[0]),
            "same_top": same, "same_top_err": same_err, "rms_dp": rms, "rms_dp_err": 0.5 / rms * mse[1] if rms else 0.0,
            "dp_mean": self.sum_p_diff / self.count, "dp_max": float(p_diff[-1]), "dp_min": float(p_diff[0]),
            "ppl_base": math.exp(log_base[0]), "ppl_base_err": math.exp(log_base[0]) * log_base[1],
            "ln_ppl_ratio": ratio, "ln_ppl_ratio_err": ratio_err,
        }


@dataclass(frozen=True)
class KldSlice:
    """The per-token figures of one block of rows, computed apart so that blocks can run on several threads."""

    nll: np.ndarray  # float32, this model
    nll_base: np.ndarray  # float32, the reference
    kld: np.ndarray  # float64, KL divergence per token
    p_diff: np.ndarray  # float32, p(target) - p_base(target)
    n_same_top: int


class SliceBuffers:
    """One thread's work arrays for kld_slice, kept between slices: fresh ones each time cost as much as the
    arithmetic (a new 12 MB array is page-faulted in on every call)."""

    def __init__(self) -> None:
        self._shape = (0, 0)
        self._floats: list[np.ndarray] = []
        self._mask = np.empty((0, 0), dtype=bool)

    def take(self, n_rows: int, n_vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Two float32 (n_rows, n_vocab) arrays and a bool one, their contents undefined."""
        if self._shape[0] < n_rows or self._shape[1] != n_vocab:
            self._shape = (n_rows, n_vocab)
            self._floats = [np.empty(self._shape, dtype=np.float32) for _ in range(2)]
            self._mask = np.empty(self._shape, dtype=bool)
        return self._floats[0][:n_rows], self._floats[1][:n_rows], self._mask[:n_rows]


def kld_slice(logits: np.ndarray, targets: np.ndarray, base: np.ndarray,
              work: SliceBuffers | None = None) -> KldSlice:
    """perplexity.cpp's log_softmax(n_vocab, logits, base_log_prob, tok, kld) for a block of rows; no shared state
    but `work`, which must be this thread's own."""
    n, n_vocab = logits.shape
    shifted, p_log_base, counted = (work or SliceBuffers()).take(n, n_vocab)
    rows = np.arange(n)
    imax = logits.argmax(axis=1)  # the first maximum, as its strict > loop finds it
    max_logit = logits[rows, imax]
    np.subtract(logits, max_logit[:, None], out=shifted)
    sum_exp = np.exp(shifted, out=shifted).sum(axis=1, dtype=np.float64)
    log_sum_exp = np.log(sum_exp).astype(np.float32)
    nll = (max_logit + log_sum_exp - logits[rows, targets]).astype(np.float32)
    head = np.ascontiguousarray(base[:, :4]).view(np.float32)
    scale, min_log_prob = head[:, 0], head[:, 1]
    q = base[:, 4:4 + n_vocab]
    nll_base = -(scale * q[rows, targets].astype(np.float32) + min_log_prob)
    top = max_logit + log_sum_exp
    imax_base = q.argmax(axis=1)  # scale >= 0: the largest q is the largest log p (index 0 when all equal)
    # Every entry dequantized in float32 as llama.cpp does (scale * q + min), then its exact test p_log > -16.
    # A small model's distributions are flat (a quarter of a row passes), so whole-row passes beat gathering the
    # passing entries.
    np.multiply(q, scale[:, None], dtype=np.float32, out=p_log_base)
    p_log_base += min_log_prob[:, None]
    np.greater(p_log_base, np.float32(-LOG_RANGE), out=counted)
    gap = np.subtract(p_log_base, logits, out=shifted)  # p_log_base - log_softmax = p_log_base - logit + top
    gap += top[:, None]
    weight = np.exp(p_log_base, out=p_log_base)  # the entries at or below -16 are zeroed next, as never counted
    np.multiply(weight, counted, out=weight)
    values = np.einsum("ij,ij->i", weight, gap, dtype=np.float64)
    p_diff = (np.exp(-nll) - np.exp(-nll_base)).astype(np.float32)
    return KldSlice(nll=nll, nll_base=nll_base, kld=values, p_diff=p_diff, n_same_top=int((imax == imax_base).sum()))


def add_kld_slice(part: KldSlice, kld: KldAccumulator, ppl: PplAccumulator) -> None:
    """Fold one block's figures into the running sums (in row order, so that the result does not depend on threads)."""
    n = len(part.kld)
    ppl.add(part.nll)
    kld.base.add(part.nll_base)
    kld.sum_nll_nll_base += float((part.nll.astype(np.float64) * part.nll_base.astype(np.float64)).sum())
    kld.sum_kld += float(part.kld.sum())
    kld.sum_kld2 += float((part.kld * part.kld).sum())
    d = part.p_diff.astype(np.float64)
    kld.sum_p_diff += float(d.sum())
    kld.sum_p_diff2 += float((d * d).sum())
    kld.sum_p_diff4 += float((d ** 4).sum())
    kld.n_same_top += part.n_same_top
    kld.kld_values[kld.count:kld.count + n] = part.kld
    kld.p_diff_values[kld.count:kld.count + n] = part.p_diff
    kld.count += n


def kld_rows(logits: np.ndarray, targets: np.ndarray, base: np.ndarray, kld: KldAccumulator,
             ppl: PplAccumulator) -> None:
    """One block of rows measured and folded in: kld_slice then add_kld_slice."""
    add_kld_slice(kld_slice(logits, targets, base), kld, ppl)


def _mean_and_uncertainty(total: float, total2: float, count: int) -> tuple[float, float]:
    if count < 1:
        return (0.0, 0.0)
    mean = total / count
    var = total2 / count - mean * mean
    return (mean, math.sqrt(var / (count - 1)) if var > 0 and count > 10 else 0.0)


def _covariance(total_a: float, total_b: float, total_ab: float, count: int) -> float:
    if count < 10:
        return 0.0
    return (total_ab / count - (total_a / count) * (total_b / count)) / (count - 1)


def _percentile(values: np.ndarray, fraction: float) -> float:
    """perplexity.cpp's percentile: linear between the two nearest sorted values."""
    if fraction <= 0:
        return float(values[0])
    if fraction >= 1:
        return float(values[-1])
    p = fraction * (len(values) - 1)
    ip = int(p)
    p -= ip
    return float((1 - p) * values[ip] + p * values[min(ip + 1, len(values) - 1)])
