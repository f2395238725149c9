"""Bad input to a quality run, each refused with its reason before anything is evaluated; and the arithmetic kernels."""

from __future__ import annotations

import math
import socket
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.bench.quality.reference import ReferenceWriter, quantize_rows, read_reference, row_len, scored_per_chunk
from models.bench.quality.job import WIKITEXT2, QualityPlan, load_text, quality_context, run_quality, wikitext2_path
from models.bench.quality.stats import KldAccumulator, PplAccumulator, kld_rows, nll_rows
from models.errors import BenchmarkError, TokenometerError

TEXT = Path(__file__).parents[1] / "data" / "public_domain.txt"
C = 64


@pytest.fixture(scope="module")
def reference(loaded: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-chunk reference of the starter on the test text."""
    ll, model = loaded
    path = tmp_path_factory.mktemp("ref") / "starter.kld"
    run_quality(ll, model, QualityPlan(text=str(TEXT), n_ctx=C, n_chunks=2, save_reference=str(path)), n_batch=2 * C,
                context=lambda shape: quality_context(ll, model, shape, n_threads=1))
    return path


class NoWork:
    """Stands where the context would be made: a refusal must come before it is asked for."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, shape: Any) -> Any:
        self.calls += 1
        raise AssertionError("a context was made for a run that should have been refused")


def _refused(loaded: tuple[Any, Any], plan: QualityPlan, match: str) -> None:
    ll, model = loaded
    no_work = NoWork()
    events: list[str] = []
    with pytest.raises(BenchmarkError, match=match):
        run_quality(ll, model, plan, context=no_work, emit=lambda kind, **data: events.append(kind))
    assert no_work.calls == 0 and "quality_chunk" not in events


def test_a_text_too_short_for_two_chunks_is_refused(loaded: tuple[Any, Any], tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("Four score and seven years ago our fathers brought forth on this continent a new nation.")
    _refused(loaded, QualityPlan(text=str(short), n_ctx=C), r"too short: it tokenizes to \d+ tokens.*at least 128")


def test_a_reference_from_another_model_is_refused(loaded: tuple[Any, Any], tmp_path: Path) -> None:
    ll, model = loaded
    tokens = np.arange(C, dtype=np.int32)
    other = tmp_path / "other-model.kld"
    writer = ReferenceWriter(other, n_ctx=C, n_vocab=100, tokens=tokens)
    writer.write_chunk(np.zeros((scored_per_chunk(C), row_len(100)), dtype=np.uint16))
    writer.finish({"model": "a 100-token model"})
    _refused(loaded, QualityPlan(text=str(TEXT), reference=str(other)),
             "another model: its vocabulary has 100 tokens, this model's 49152")


def test_a_truncated_reference_is_refused_before_the_worker_starts(loaded: tuple[Any, Any], reference: Path,
                                                                   tmp_path: Path) -> None:
    cut = tmp_path / "cut.kld"
    data = reference.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    plan = QualityPlan(text=str(TEXT), reference=str(cut))
    problem = plan.problem()  # what the CLI and GUI ask before any process starts
    assert problem is not None and "truncated" in problem and "of 2 chunks present" in problem
    _refused(loaded, plan, "truncated")


def test_a_reference_from_another_text_is_refused(loaded: tuple[Any, Any], reference: Path, tmp_path: Path) -> None:
    paragraphs = TEXT.read_text().split("\n\n")
    other = tmp_path / "reordered.txt"
    other.write_text("\n\n".join(paragraphs[1:] + paragraphs[:1]))
    _refused(loaded, QualityPlan(text=str(other), reference=str(reference)),
             r"another text \(or another tokenizer\).*from token 0")


def test_a_reference_the_disk_cannot_hold_is_refused(loaded: tuple[Any, Any], tmp_path: Path) -> None:
    folder = tmp_path / "small"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tokenometer-ref", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"a small tmpfs cannot be mounted for this test (needs root): {done.stderr}")
    try:  # two chunks of 64 keep 2 x 31 rows of 49156 uint16: about 6 MiB, on a 1 MiB disk
        _refused(loaded, QualityPlan(text=str(TEXT), n_ctx=C, n_chunks=2, save_reference=str(folder / "r.kld")),
                 r"needs 5\.81 MiB and .* has 1\.00 MiB free; use fewer chunks")
        assert list(folder.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_other_files_are_not_taken_for_references(reference: Path, tmp_path: Path) -> None:
    model_like = tmp_path / "model.gguf"
    model_like.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(BenchmarkError, match="not a reference log-probability file"):
        read_reference(model_like)
    padded = tmp_path / "padded.kld"
    padded.write_bytes(reference.read_bytes() + b"junk")
    with pytest.raises(BenchmarkError, match="unexpected bytes after its last chunk"):
        read_reference(padded)
    assert QualityPlan(text=str(TEXT), reference=str(tmp_path / "missing.kld")).problem() is not None


def test_text_problems_are_named(tmp_path: Path) -> None:
    assert "does not exist" in (QualityPlan(text=str(tmp_path / "none.txt")).problem() or "")
    assert "either compare" in (QualityPlan(text=str(TEXT), reference="a", save_reference="b").problem() or "").lower()
    assert "at least 8" in (QualityPlan(text=str(TEXT), n_ctx=4).problem() or "")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(BenchmarkError, match="not UTF-8 text"):
        load_text(str(latin1))


def test_wikitext_fails_clearly_when_the_hub_cannot_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    with socket.socket() as probe:  # a loopback port nothing listens on: refused, as when offline
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with pytest.raises(TokenometerError, match=r"WikiText-2 \(or pass a text file with --text FILE\).*cannot be "):
        wikitext2_path()
    assert QualityPlan(text=WIKITEXT2).problem() is None  # not a problem of the plan: fetched when it runs


def test_quantized_rows_hold_log_probabilities_to_half_a_step() -> None:
    rng = np.random.default_rng(7)
    logits = (rng.standard_normal((5, 301)) * 4).astype(np.float32)
    targets = rng.integers(0, 301, size=5)
    rows, nll = quantize_rows(logits, targets)
    assert rows.shape == (5, row_len(301)) and np.all(rows[:, 305:] == 0)  # padded to even
    assert nll is not None and np.allclose(nll, nll_rows(logits, targets), rtol=1e-5)
    head = rows[:, :4].copy().view(np.float32)
    scale, min_log_prob = head[:, 0], head[:, 1]
    exact = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum(axis=1, keepdims=True))
    stored = scale[:, None] * rows[:, 4:305].astype(np.float64) + min_log_prob[:, None]
    top = exact.max(axis=1, keepdims=True)
    live = exact > top - 16
    assert np.all(np.abs(stored - exact)[live] <= scale.repeat(301).reshape(5, 301)[live] * 0.5 + 1e-5)


def test_kl_divergence_kernel_against_the_definition() -> None:
    rng = np.random.default_rng(11)
    base_logits = (rng.standard_normal((40, 257)) * 3).astype(np.float32)
    logits = base_logits + (rng.standard_normal((40, 257)) * 0.5).astype(np.float32)
    targets = rng.integers(0, 257, size=40)
    rows, _ = quantize_rows(base_logits)
    ppl, kld = PplAccumulator(), KldAccumulator(40)
    kld_rows(logits, targets, rows, kld, ppl)

    head = rows[:, :4].copy().view(np.float32)
    log_p = head[:, :1] * rows[:, 4:261].astype(np.float64) + head[:, 1:2]  # the reference as stored
    log_q = logits - np.log(np.exp(logits.astype(np.float64)).sum(axis=1, keepdims=True))
    kept = log_p > -16
    expected = np.where(kept, np.exp(log_p) * (log_p - log_q), 0).sum(axis=1)
    assert kld.sum_kld / 40 == pytest.approx(expected.mean(), rel=1e-4)
    assert np.allclose(kld.kld_values[:40], expected, atol=1e-5)
    assert ppl.sum == pytest.approx(-log_q[np.arange(40), targets].sum(), rel=1e-5)
    assert ppl.sum == pytest.approx(nll_rows(logits, targets).sum(), rel=1e-5)
    same = (logits.argmax(axis=1) == base_logits.argmax(axis=1)).sum()
    assert kld.n_same_top == same
    summary = kld.summary(ppl)
    assert summary["kld_median"] == pytest.approx(float(np.median(kld.kld_values[:40])), rel=1e-6)
    assert summary["same_top"] == same / 40
    p_diff = np.exp(-ppl_values(logits, targets)) - np.exp(log_p[np.arange(40), targets])
    assert summary["rms_dp"] == pytest.approx(math.sqrt((p_diff ** 2).mean()), rel=1e-4)


def ppl_values(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return nll_rows(logits, targets)


def test_wikitext_is_fetched_once_from_the_hub_and_unpacked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the loopback Hub server with the real huggingface_hub client: a dataset repo holding the zip."""
    import io
    import os
    import zipfile

    from huggingface_hub import constants

    from tests.models.hub.hubserver import HubServer

    text = "\n = Valkyria Chronicles III = \n\n Senjō no Valkyria 3 : Unrecorded Chronicles is a tactical game .\n"
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("wikitext-2-raw/wiki.test.raw", text)
        archive.writestr("wikitext-2-raw/wiki.train.raw", "not this one")
    with HubServer() as server:
        server.add_repo("datasets/ggml-org/ci", {"wikitext-2-raw-v1.zip": bundle.getvalue()}, tags=[])
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.delenv("HF_TOKEN", raising=False)
        loaded, name = load_text(WIKITEXT2)
        assert loaded == text and name == WIKITEXT2
        asked = len(server.served)
        assert any(s.path.endswith("/datasets/ggml-org/ci/resolve/main/wikitext-2-raw-v1.zip") and s.method == "GET"
                   for s in server.served)
        assert load_text(WIKITEXT2)[0] == text  # the unpacked copy: the Hub is not asked again
        assert len(server.served) == asked
    assert os.path.basename(wikitext2_path(download=False)) == "wiki.test.raw"
