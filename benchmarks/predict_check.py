"""Predicted vs measured generation speed for every model and settings in a results store.

Each generation result is predicted from this machine's bandwidth and the OTHER models' results only (leave one
model out), or with --history N from the first N models measured (the issue's goal: three models measured, the
others within +-20%). Helpers make models to measure: quants of a GGUF through llama.cpp's own quantizer
(llama_model_quantize), random-weight llama models of several sizes (tests/models/gguf/factory.py), and a short
benchmark of each (BenchRunner, stored like `tokenometer bench`).

  python benchmarks/predict_check.py                              # the app's store, leave-one-model-out
  python benchmarks/predict_check.py --store R.sqlite3 --history 3
  python benchmarks/predict_check.py --quants STARTER.gguf --out /tmp/q --bench --store /tmp/r.sqlite3
  python benchmarks/predict_check.py --make-models /tmp/m --bench --store /tmp/r.sqlite3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.fit.speed import bandwidth_share, predict_speed  # noqa: E402
from models.gguf.split import read_model_header  # noqa: E402
from models.machine.bandwidth import machine_bandwidth  # noqa: E402
from models.results.store import ResultsStore, RunRecord  # noqa: E402

log = logging.getLogger(__name__)
QUANTS = {"F32": 0, "F16": 1, "Q8_0": 7, "Q5_1": 9, "Q4_0": 2}


def quantize(source: Path, out_dir: Path, names: list[str]) -> list[Path]:
    """Quants of `source` made by llama.cpp's quantizer (requantizing is allowed: speed, not quality, matters)."""
    import llama_cpp

    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name in names:
        target = out_dir / f"{source.stem.rsplit('.', 1)[0]}.{name}.gguf"
        if not target.exists():
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype, params.allow_requantize = QUANTS[name], True
            if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params) != 0:
                raise RuntimeError(f"llama_model_quantize failed for {name}")
        made.append(target)
    return made


def make_models(out_dir: Path) -> list[Path]:
    """Random-weight llama models from 40M to 1.3B parameters, f16, each also quantized to Q8_0 and Q4_0."""
    from tests.models.gguf.factory import Shape, write_model

    shapes = {"s": Shape(n_layer=8, n_embd=768, n_head=12, n_head_kv=4, n_ff=2048, n_vocab=32000),
              "m": Shape(n_layer=16, n_embd=1024, n_head=16, n_head_kv=4, n_ff=4096, n_vocab=32000),
              "l": Shape(n_layer=22, n_embd=2048, n_head=32, n_head_kv=8, n_ff=5632, n_vocab=32000)}
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for label, shape in shapes.items():
        f16 = out_dir / f"rand-{label}.F16.gguf"
        if not f16.exists():
            write_model(f16, shape)
        made += [f16, *quantize(f16, out_dir, ["Q8_0", "Q4_0"])]
    return made


def bench(models: list[Path], store_path: Path, *, threads: int, repetitions: int) -> None:
    """pp64 and tg32 of each model on the CPU, stored with this machine's fingerprint."""
    from models.bench.runner import BenchRunner
    from models.bench.spec import BenchJob, BenchParams, BenchTest
    from models.machine.hardware import machine_fingerprint

    machine = machine_fingerprint()
    tests = (BenchTest(n_prompt=64, n_gen=0), BenchTest(n_prompt=0, n_gen=32))
    with ResultsStore(store_path) as store:
        for model in models:
            job = BenchJob(model_path=model, params=BenchParams(n_threads=threads, n_gpu_layers=0), tests=tests,
                           repetitions=repetitions)
            for result in BenchRunner().run([job]):
                print(f"  {model.name:<40} {result.test or '':<8} {result.status:<7} {result.avg_ts:9.2f} t/s "
                      f"± {result.stddev_ts:.2f} {result.error}", flush=True)
                store.record_result(result, machine=machine)


def _model(record: RunRecord) -> str:
    return record.result.model_sha256 or Path(record.result.model_path).name


def table(store_path: Path, *, history_models: int, threads: int | None, names: list[str] | None = None,
          measure: bool = False, read_gbs: float = 0.0, l3_mib: float = 0.0) -> int:
    from models.machine.hardware import probe_cpu

    if read_gbs:  # replaying another machine's store (its models at the same paths here): its figures
        from models.machine.bandwidth import CpuBandwidth, MachineBandwidth

        bandwidth = MachineBandwidth(cpu=CpuBandwidth(read=read_gbs * 1e9, copy=0.0, threads=threads or 0,
                                                      buffer_bytes=0, repeats=0))
    else:
        bandwidth = machine_bandwidth(threads=threads, refresh=measure)
    l3 = int(l3_mib * 2**20) if l3_mib else probe_cpu([]).caches.get("L3", 0)
    print(f"bandwidth: {bandwidth.summary()}; L3 {l3 / 2**20:.0f} MiB")
    with ResultsStore(store_path, create=False) as store:
        records = list(reversed(store.list_runs()))  # oldest first
    gens = [r for r in records if r.result.status == "ok" and r.result.n_gen > 0 and r.result.n_prompt == 0]
    order = list(dict.fromkeys(_model(r) for r in gens))
    errors = []
    print(f"{'model':<40} {'test':<10} {'measured':>9} {'predicted':>16} {'error':>7} {'limit':>8} {'of limit':>8} "
          f"{'at run':>8} basis")
    for record in gens:
        r, model = record.result, _model(record)
        if names:
            basis = [m for m in order if any(n in m for n in names)]
            if model in basis:
                continue
        elif history_models:
            basis = order[:history_models]
            if model in basis:
                continue
        else:
            basis = [m for m in order if m != model]
        history = [h for h in records if _model(h) in basis]
        try:
            header = read_model_header(r.model_path)
        except Exception as error:  # noqa: BLE001 - a file gone since: nothing to predict from
            print(f"{Path(r.model_path).name:<40} header not readable: {error}")
            continue
        p = predict_speed(header, bandwidth, history=history, machine_id=str(record.machine.get("machine_id", "")),
                          n_gpu_layers=r.n_gpu_layers, gpu=bool(r.gpu_info) and r.n_gpu_layers != 0,
                          n_depth=r.n_depth, n_gen=r.n_gen, type_k=r.type_k, type_v=r.type_v, cache_bytes=l3)
        if p.tg <= 0:
            print(f"{Path(r.model_path).name:<40} not predicted: {'; '.join(p.notes)}")
            continue
        error = p.tg / r.avg_ts - 1
        errors.append(error)
        share = bandwidth_share(r, bandwidth, header=header) or 0.0
        stored = r.speed_estimate.get("predicted_ts", 0.0)  # what was predicted when it ran, if it was
        print(f"{Path(r.model_path).name:<40} {r.test or '':<10} {r.avg_ts:9.2f} {p.tg:8.2f} ± {p.tg_spread:5.2f} "
              f"{error:+7.1%} {p.tg_ceiling:8.1f} {share:8.0%} {stored or float('nan'):8.1f} {p.n_models} models, "
              f"{p.kind}")
    if not errors:
        print("no generation results to check")
        return 1
    within = sum(abs(e) <= 0.20 for e in errors)
    print(f"\n{within} of {len(errors)} predictions within ±20%; median |error| "
          f"{statistics.median(abs(e) for e in errors):.1%}, worst {max(errors, key=abs):+.1%}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="results store (default: the app's)")
    parser.add_argument("--history", type=int, default=0,
                        help="learn from the first N models measured and predict the others (default: leave one out)")
    parser.add_argument("--history-names", default="",
                        help="learn from the models whose file name contains one of these (comma list)")
    parser.add_argument("--measure", action="store_true", help="measure the bandwidth again first")
    parser.add_argument("--read-gbs", type=float, default=0.0,
                        help="use this CPU read bandwidth (GB/s) instead of this machine's (replaying another's store)")
    parser.add_argument("--l3-mib", type=float, default=0.0, help="use this L3 size instead of this machine's")
    parser.add_argument("--quants", type=Path, help="make quants of this GGUF into --out")
    parser.add_argument("--make-models", type=Path, help="write random llama models of three sizes here")
    parser.add_argument("--out", type=Path, default=Path("/tmp/quants"))
    parser.add_argument("--bench", action="store_true", help="benchmark the models made (pp64, tg32) first")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: physical cores)")
    parser.add_argument("-r", "--repetitions", type=int, default=3)
    args = parser.parse_args()
    from models.bench.spec import default_threads
    from models.paths import results_db_path

    store = args.store or results_db_path()
    models: list[Path] = []
    if args.quants:
        models += [args.quants, *quantize(args.quants, args.out, ["F32", "F16", "Q8_0", "Q5_1", "Q4_0"])]
    if args.make_models:
        models += make_models(args.make_models)
    if args.bench and models:
        bench(models, store, threads=args.threads or default_threads(), repetitions=args.repetitions)
    names = [n for n in args.history_names.split(",") if n]
    return table(store, history_models=args.history, threads=args.threads, names=names, measure=args.measure,
                 read_gbs=args.read_gbs, l3_mib=args.l3_mib)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
