"""Benchmark of the ``ingest`` stage on synthetic MIMIC-IV-shaped data at several sizes.

For each size: generate (``synthesize``, cached), then in a fresh subprocess run ``ingest`` and, separately,
a bare polars read+write of the same files (the same 16 MiB slices, default type inference, no
validation, no event building, no sorting); report wall seconds, lab rows/s, events/s, peak RSS (``ru_maxrss`` of the child),
the ratio ingest / bare, the log-log slope of time against lab rows, and an extrapolation to full MIMIC-IV
scale (120 M lab rows).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/etl.py --patients 2000 6000 20000 [60000] \
        --workdir /tmp/etl-bench [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FULL_SCALE_LAB_ROWS = 120_000_000

_CHILD_INGEST = """
import json, resource, sys, time
from pathlib import Path
from pipeline.ingest import IngestConfig, ingest
t = time.perf_counter()
s = ingest("mimic-iv", Path(sys.argv[1]), Path(sys.argv[2]), IngestConfig(shard_size=int(sys.argv[3])), progress=False)
print(json.dumps({"seconds": time.perf_counter() - t, "events": s["events"], "rejects": s["rejects_total"],
                  "labs": s["events_per_family"].get("LAB", 0),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_CHILD_BARE = """
import json, resource, sys, time
from pathlib import Path
import polars as pl, pyarrow as pa
t = time.perf_counter()
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
rows = 0
for f in sorted(src.glob("*/*.csv.gz")):
    # bare polars read + write, in the same bounded-memory slices as ingest (16 MiB of CSV at a time),
    # default type inference, no validation, no event building, no sorting
    with pa.CompressedInputStream(pa.OSFile(str(f)), "gzip") as stream:
        data = stream.read(1 << 16)
        header, _, rest = data.partition(b"\\n")
        k = 0
        while True:
            chunk = stream.read(16 << 20)
            buf = rest + chunk
            if not buf:
                break
            cut = buf.rfind(b"\\n") + 1 if chunk else len(buf)
            odd = buf.count(b'"', 0, cut) % 2
            while cut and odd:
                prev = buf.rfind(b"\\n", 0, cut - 1) + 1
                odd ^= buf.count(b'"', prev, cut) % 2
                cut = prev
            buf, rest = buf[:cut], buf[cut:]
            if not buf:
                continue
            df = pl.read_csv(header + b"\\n" + buf, infer_schema_length=10000, schema_overrides={"value": pl.String})
            df.write_parquet(dst / f"{f.parent.name}_{f.name.split('.')[0]}_{k}.parquet")
            rows += df.height
            k += 1
print(json.dumps({"seconds": time.perf_counter() - t, "rows": rows,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, nargs="+", default=[2000, 6000, 20000])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ehr-hcl-etl-bench"))
    ap.add_argument("--shard-size", type=int, default=5_000)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--keep", action="store_true", help="keep the generated raw data (default: keep; outputs removed)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from pipeline.sources.synthetic import SynthConfig, synthesize

    rows = []
    for n in sorted(args.patients):
        raw = args.workdir / f"raw_{n}"
        if not (raw / "truth" / "summary.json").exists():
            t = time.perf_counter()
            synthesize(SynthConfig(patients=n, seed=0), raw, progress=False)
            print(f"synth {n} patients: {time.perf_counter() - t:.1f} s", flush=True)
        size_mb = sum(p.stat().st_size for p in raw.glob("*/*.csv.gz")) / 2**20
        ing = _child(_CHILD_INGEST, str(raw), str(args.workdir / f"events_{n}"), str(args.shard_size))
        bare = _child(_CHILD_BARE, str(raw), str(args.workdir / f"bare_{n}"))
        for p in (args.workdir / f"events_{n}", args.workdir / f"bare_{n}"):
            subprocess.run(["rm", "-rf", str(p)], check=True)
        row = {
            "patients": n,
            "lab_rows": ing["labs"],
            "events": ing["events"],
            "input_mb_gz": round(size_mb, 1),
            "ingest_s": round(ing["seconds"], 2),
            "bare_s": round(bare["seconds"], 2),
            "ratio_ingest_to_bare": round(ing["seconds"] / bare["seconds"], 2),
            "lab_rows_per_s": round(ing["labs"] / ing["seconds"]),
            "events_per_s": round(ing["events"] / ing["seconds"]),
            "peak_rss_mb": round(ing["peak_rss_mb"]),
            "bare_peak_rss_mb": round(bare["peak_rss_mb"]),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    x = np.log([r["lab_rows"] for r in rows])
    y = np.log([r["ingest_s"] for r in rows])
    slope = float(np.polyfit(x, y, 1)[0]) if len(rows) >= 2 else float("nan")
    big = rows[-1]
    extra_linear = big["ingest_s"] * FULL_SCALE_LAB_ROWS / big["lab_rows"]
    extra_slope = (
        big["ingest_s"] * (FULL_SCALE_LAB_ROWS / big["lab_rows"]) ** max(slope, 1.0)
        if not math.isnan(slope)
        else float("nan")
    )
    result = {
        "sizes": rows,
        "spread": round(rows[-1]["lab_rows"] / rows[0]["lab_rows"], 1),
        "loglog_slope": round(slope, 3),
        "rss_ratio_largest_to_smallest": round(rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"], 2),
        "extrapolated_full_scale_min": {
            "linear": round(extra_linear / 60, 1),
            "with_fitted_slope": round(extra_slope / 60, 1),
        },
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(
        f"\nlab rows {rows[0]['lab_rows']:,} .. {rows[-1]['lab_rows']:,} ({result['spread']}x); "
        f"log-log slope {result['loglog_slope']}; peak RSS {rows[0]['peak_rss_mb']} -> {rows[-1]['peak_rss_mb']} MB "
        f"({result['rss_ratio_largest_to_smallest']}x); ingest/bare {rows[-1]['ratio_ingest_to_bare']}x; "
        f"full scale (120 M lab rows) ~ {result['extrapolated_full_scale_min']['with_fitted_slope']} min"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
