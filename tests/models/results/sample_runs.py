"""A realistic selection of runs (two models, a depth sweep, two machines) for report tests and demos."""

from __future__ import annotations

from pathlib import Path

from models.results.store import EnergyFigures, ResultsStore, RunRecord

from .conftest import MACHINE_A, MACHINE_B, make_result

MODELS = (("SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432, 134_515_008, 1.0),
          ("Qwen3-0.6B-Q8_0.gguf", 639_446_688, 596_049_920, 0.28),
          ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", 807_690_656, 1_235_814_432, 0.22))


def fill_store(path: Path) -> list[RunRecord]:
    """Store the sample runs in a new store at `path` and return them in id order."""
    ids = []
    with ResultsStore(path) as store:
        for machine, boost in ((MACHINE_A, 1.0), (MACHINE_B, 3.2)):
            for index, (file, size, n_params, speed) in enumerate(MODELS):
                if machine is MACHINE_B and index == 2:
                    continue
                job = f"{machine['machine_id'][:4]}-{index}"
                for depth in (0, 512, 1024):
                    fade = 1.0 / (1.0 + depth / 1500)
                    pp = 1800.0 * speed * boost * fade
                    tg = 95.0 * speed * boost * fade
                    for n_prompt, n_gen, base in ((512, 0, pp), (0, 128, tg)):
                        result = make_result(model=file, size=size, n_params=n_params, n_prompt=n_prompt,
                                             n_gen=n_gen, n_depth=depth,
                                             ts=(base * 0.99, base * 1.012, base * 0.997, base * 1.004),
                                             mem_peak=int(size * 1.25) + 40 * 2**20,
                                             mem_rss_anon=int(size * 0.12) + 30 * 2**20,
                                             fit_estimate={"total": int(size * 1.2) + 35 * 2**20})
                        seconds = sum(result.samples_ns) / 1e9
                        ids.append(store.record_result(result, machine=machine, job=job, energy=EnergyFigures(
                            joules=seconds * (28.0 if n_gen == 0 else 21.0) * (1.6 if boost > 1 else 1.0),
                            seconds=seconds, source="rapl", is_estimate=False)))
            failed = make_result(model=MODELS[2][0], status="failed", size=MODELS[2][1], n_params=MODELS[2][2])
            failed.error = "failed to load the model: out of memory"
            ids.append(store.record_result(failed, machine=machine, job="failed"))
        return store.get_runs(ids)
