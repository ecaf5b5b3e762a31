"""Load time and forecast latency of third-party checkpoints at their published sizes, on this machine.

    python benchmarks/third_party_latency.py [--series 16] [--context 512]

No weights are downloaded: each checkpoint is randomly initialised with the publisher's architecture
(Chronos-Bolt-small, Chronos-2, TimesFM 2.5 200M), saved, and loaded through tsfm_core.third_party,
so the figures are speed only (the forecasts mean nothing). Needs the `third-party` extra. Writes
benchmarks/results/third_party_latency_cpu.json (with the load average: the dev box is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tsfm_core import third_party
from tsfm_core.series import Series

DECILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def bolt_small(directory: Path) -> None:
    """amazon/chronos-bolt-small's architecture (its config.json: T5, d_model 512, 6 + 6 layers)."""
    from chronos.chronos_bolt import ChronosBoltModelForForecasting
    from transformers import T5Config

    config = T5Config(
        d_model=512, d_ff=2048, d_kv=64, num_heads=8, num_layers=6, num_decoder_layers=6, decoder_start_token_id=0,
        pad_token_id=0, architectures=["ChronosBoltModelForForecasting"], chronos_pipeline_class="ChronosBoltPipeline",
        chronos_config={"context_length": 2048, "prediction_length": 64, "input_patch_size": 16,
                        "input_patch_stride": 16, "quantiles": DECILES, "use_reg_token": True})
    ChronosBoltModelForForecasting(config).save_pretrained(directory)


def chronos2(directory: Path) -> None:
    """About amazon/chronos-2's size (d_model 768, 12 layers, 21 quantiles, 16-step patches)."""
    from chronos.chronos2 import Chronos2Model
    from chronos.chronos2.config import Chronos2CoreConfig

    levels = [0.01, 0.05, *[round(0.05 * i, 2) for i in range(2, 19)], 0.95, 0.99]
    config = Chronos2CoreConfig(
        d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12, architectures=["Chronos2Model"],
        chronos_pipeline_class="Chronos2Pipeline",
        chronos_config={"context_length": 8192, "output_patch_size": 16, "input_patch_size": 16,
                        "input_patch_stride": 16, "quantiles": levels, "use_reg_token": True, "use_arcsinh": True,
                        "max_output_patches": 64})
    Chronos2Model(config).save_pretrained(directory)


def timesfm25(directory: Path) -> None:
    """google/timesfm-2.5-200m-pytorch: the package's own fixed definition."""
    from timesfm.timesfm_2p5.timesfm_2p5_torch import TimesFM_2p5_200M_torch

    TimesFM_2p5_200M_torch(torch_compile=False).save_pretrained(directory)


def measure(name: str, build, series: list[Series], horizons: list[int]) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        torch.manual_seed(0)
        build(Path(scratch))
        start = time.perf_counter()
        forecaster = third_party.load(scratch)
        loaded = time.perf_counter() - start
        info = forecaster.describe()
        forecaster.forecast(series[:1], horizons[0], [0.1, 0.5, 0.9])  # warm-up
        timings = {}
        for h in horizons:
            start = time.perf_counter()
            forecaster.forecast(series, h, [0.1, 0.5, 0.9])
            timings[str(h)] = round(time.perf_counter() - start, 3)
    return {"model": name, "family": info.family, "parameters": info.parameters, "load_s": round(loaded, 3),
            "forecast_s_by_horizon": timings}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=16)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--horizons", type=int, nargs="+", default=[24, 128])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    series = [Series(rng.normal(size=args.context).cumsum()) for _ in range(args.series)]
    results = [measure(name, build, series, args.horizons) for name, build in
               [("chronos-bolt-small (random init)", bolt_small), ("chronos-2 (random init)", chronos2),
                ("timesfm-2.5-200m (random init)", timesfm25)]]
    out = {"device": "cpu", "threads": torch.get_num_threads(), "load_average_1m": os.getloadavg()[0],
           "series": args.series, "context": args.context, "results": results}
    path = Path(__file__).parent / "results" / "third_party_latency_cpu.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
