"""The model across a pool of devices: llama.cpp's layer split by free memory or tensor split, per-device memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.errors import ModelFileError
from models.fit.pool import estimate_pool, layer_devices
from models.gguf.split import read_model_header


def test_layers_split_as_llama_cpp_does() -> None:
    # 30 layers + output, 20 offloaded: layers 11..30, split at half of the shares (std::upper_bound).
    placed = layer_devices(30, 20, [1, 1])
    assert placed[:11] == [None] * 11
    assert placed[11:21] == [0] * 10 and placed[21:] == [1] * 10
    # shares by free memory 1:3 over every layer and the output: a quarter of 31 positions on the first
    placed = layer_devices(30, -1, [2 << 30, 6 << 30])
    assert placed.count(0) == 8 and placed.count(1) == 23 and placed[-1] == 1
    assert layer_devices(4, 0, [1.0]) == [None] * 5
    assert layer_devices(4, 99, []) == [None] * 5
    assert layer_devices(3, -1, [0, 0]) == [0, 0, 1, 1]  # no shares known: equal parts


def test_pool_estimate_places_weights_kv_and_output(starter_model: Path) -> None:
    header = read_model_header(starter_model)
    pool = estimate_pool(header, [("RPC0", 8 << 30), ("RPC1", 8 << 30)], host_free=16 << 30, n_ctx=512,
                         n_gpu_layers=20)
    cpu, one, two = pool.devices
    assert [d.name for d in pool.devices] == ["CPU", "RPC0", "RPC1"]
    assert cpu.layers == list(range(11)) and one.layers == list(range(11, 21)) and two.layers == list(range(21, 31))
    assert one.weights > 0 and two.weights > one.weights  # the output layer (a tied copy of the embeddings)
    assert one.kv > 0 and one.kv == pytest.approx(cpu.kv * 10 / 11, rel=0.01)
    assert two.compute > one.compute > 0  # the logits stage lives on the output device
    assert pool.fits and "Fits the pool at 512 tokens" in pool.summary
    short = estimate_pool(header, [("RPC0", 8 << 30), ("RPC1", 1 << 20)], host_free=16 << 30, n_ctx=512,
                          n_gpu_layers=-1, tensor_split=(1, 1))
    assert not short.fits and "RPC1" in short.summary and "(short)" in short.summary
    with pytest.raises(ModelFileError):
        estimate_pool(header, [], host_free=1 << 30, n_ctx=512)
