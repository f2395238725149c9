"""The quant a stored run is filed under comes from the one file-name parser the Hub listing uses."""

from __future__ import annotations

import pytest

from models.hub.names import parse_quant
from models.results.store import ResultsStore, model_identity_from_result

from .conftest import MACHINE_A, make_result


@pytest.mark.parametrize(("file", "quant"), [
    ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),  # the store's own pattern found nothing here
    ("BitNet-b1.58-2B-4T-TQ1_0.gguf", "TQ1_0"),  # nor here (a T before the Q)
    ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),  # and dropped unsloth's UD- here
    ("gpt-oss-120b-MXFP4_MOE-00001-of-00002.gguf", "MXFP4_MOE"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("Llama-3.2-1B-Instruct-IQ4_NL.gguf", "IQ4_NL"),
    ("Qwen2.5-0.5B.gguf", None),
])
def test_runs_are_filed_under_the_same_quant_the_hub_listing_shows(file: str, quant: str | None,
                                                                     store: ResultsStore) -> None:
    assert parse_quant(file) == quant
    result = make_result(model=file)
    assert model_identity_from_result(result)["quant"] == (quant or "")
    run = store.get_runs([store.record_result(result, machine=MACHINE_A)])[0]
    assert run.model["quant"] == (quant or "")
