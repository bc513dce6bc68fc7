"""RoMa match() speed and peak memory: densematch vs upstream romatch 0.1.2, same random weights.

    python benchmarks/bench_roma.py                       # CPU, coarse 280 / upsample 420, 5 runs each
    python benchmarks/bench_roma.py --device cuda --coarse 560 --upsample 864 --dtype bf16 --runs 20

Each implementation runs in its own process (upstream in the venv of shared/tools/romatch-oracle.sh) so
that peak RSS (VmHWM, reset after a warm-up call) is measured in isolation; ``--rounds`` processes of each,
alternating (ours, upstream, ours, ...), so that load from other jobs hits both alike; the times of all
rounds are pooled (min and median reported). Prints one line per setting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DENSEMATCH_SHARED", REPO.parent / "shared"))


def _vmhwm_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pass


def worker(args) -> None:
    """Runs inside one process: build the model, warm up, time ``runs`` calls, print a JSON line."""
    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    state = torch.load(args.weights_dir + "/matcher.pth", weights_only=True)
    dinov2 = torch.load(args.weights_dir + "/dinov2.pth", weights_only=True)
    if args.impl == "upstream":
        import romatch.models.model_zoo.roma_models as rm

        model = rm.roma_model(resolution=args.coarse, upsample_preds=args.upsample > 0, device=args.device,
                              weights=state, dinov2_weights=dinov2, amp_dtype=dtype, use_custom_corr=False,
                              symmetric=True, upsample_res=args.upsample or None)
    else:
        sys.path.insert(0, str(REPO))
        from densematch.models.roma.matcher import build_roma

        model = build_roma(args.device, matcher_weights=state, dinov2_weights=dinov2, coarse_res=args.coarse,
                           upsample_res=args.upsample or args.coarse, upsample_preds=args.upsample > 0,
                           amp_dtype=dtype)
    del state, dinov2
    rng = np.random.default_rng(0)
    demo = SHARED / "data" / "demo_pairs"
    if (demo / "roma_sacre_coeur_A.jpg").is_file():
        im_a = Image.open(demo / "roma_sacre_coeur_A.jpg").convert("RGB")
        im_b = Image.open(demo / "roma_sacre_coeur_B.jpg").convert("RGB")
    else:
        im_a = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
        im_b = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    model.match(im_a, im_b, device=args.device)  # warm-up
    sync()
    _reset_peak()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        model.match(im_a, im_b, device=args.device)
        sync()
        times.append(time.perf_counter() - start)
    out = {"impl": args.impl, "times": times, "peak_rss_mib": _vmhwm_mib()}
    if args.device.startswith("cuda"):
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if args.sample:
        warp, certainty = model.match(im_a, im_b, device=args.device)
        _reset_peak()
        start = time.perf_counter()
        model.sample(warp, certainty, args.sample)
        out["sample_seconds"] = time.perf_counter() - start
        out["sample_peak_rss_mib"] = _vmhwm_mib()
    print("RESULT " + json.dumps(out), flush=True)


def oracle_python() -> str | None:
    script = SHARED / "tools" / "romatch-oracle.sh"
    cmd = ["bash", str(script)] + ([os.environ["ROMATCH_ORACLE"]] if os.environ.get("ROMATCH_ORACLE") else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--coarse", type=int, default=280)
    parser.add_argument("--upsample", type=int, default=420, help="0 = no upsampling pass")
    parser.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"], help="AMP dtype on CUDA")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per process (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per implementation, alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sample", type=int, default=10000, help="also time sample(num); 0 = skip")
    parser.add_argument("--impl", choices=["ours", "upstream", "both"], default="both")
    parser.add_argument("--weights-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.weights_dir:  # inner worker call
        worker(args)
        return
    sys.path.insert(0, str(REPO))
    import torch

    from densematch.models.roma.matcher import build_roma

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = build_roma("cpu", matcher_weights=False, dinov2_weights=False)
        torch.save(model.state_dict(), f"{tmp}/matcher.pth")
        torch.save(model.encoder.dinov2.state_dict(), f"{tmp}/dinov2.pth")
        del model
        impls = ["ours", "upstream"] if args.impl == "both" else [args.impl]
        results = {}
        pythons = {impl: sys.executable if impl == "ours" else oracle_python() for impl in impls}
        for impl in [i for i in impls if pythons[i] is None]:
            print(f"{impl}: reference venv unavailable, skipped")
        for _ in range(args.rounds):  # ours, upstream, ours, upstream, ...: load hits both alike
            for impl in [i for i in impls if pythons[i] is not None]:
                passed = ("device", "coarse", "upsample", "dtype", "runs", "threads", "sample")
                cmd = [pythons[impl], __file__, "--impl", impl, "--weights-dir", tmp] + [
                    f"--{k}={getattr(args, k)}" for k in passed
                ]
                done = subprocess.run(cmd, capture_output=True, text=True)
                lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                if done.returncode or not lines:
                    print(f"{impl}: failed\n{done.stderr[-2000:]}")
                    continue
                result = json.loads(lines[-1][7:])
                if impl in results:  # pool the rounds: all times, the highest peak
                    previous = results[impl]
                    result["times"] = previous["times"] + result["times"]
                    for key in ("peak_rss_mib", "peak_cuda_mib", "sample_peak_rss_mib"):
                        if key in result:
                            result[key] = max(result[key], previous[key])
                    if "sample_seconds" in result:
                        result["sample_seconds"] = min(result["sample_seconds"], previous["sample_seconds"])
                results[impl] = result
    setting = f"device={args.device} coarse={args.coarse} upsample={args.upsample or 'off'} dtype={args.dtype}"
    for impl, r in results.items():
        t = sorted(r["times"])
        extra = f"  peak CUDA {r['peak_cuda_mib']:.0f} MiB" if "peak_cuda_mib" in r else ""
        print(f"{impl:9s} {setting}: min {t[0]:.3f} s  median {t[len(t) // 2]:.3f} s  "
              f"({1 / t[len(t) // 2]:.2f} pairs/s)  peak RSS {r['peak_rss_mib']:.0f} MiB{extra}")
        if "sample_seconds" in r:
            print(f"{impl:9s} sample(num={args.sample}): {r['sample_seconds']:.2f} s  "
                  f"peak RSS {r['sample_peak_rss_mib']:.0f} MiB")
    if len(results) == 2:
        ours, ref = (sorted(results[k]["times"])[len(results[k]["times"]) // 2] for k in ("ours", "upstream"))
        print(f"speed-up (median upstream / ours): {ref / ours:.2f}x")
        best_ours, best_ref = (min(results[k]["times"]) for k in ("ours", "upstream"))
        print("RESULT " + json.dumps({  # for bench_all.py (min of the runs)
            "target": f"RoMa `match()` {args.coarse}/{args.upsample or 'off'} {args.device} "
                      f"{'fp32' if args.device == 'cpu' else args.dtype}, {args.threads} threads (`bench_roma.py`)",
            "reference": "romatch 0.1.2", "ref_s": best_ref, "ours_s": best_ours, "ratio": best_ref / best_ours,
            "load": os.getloadavg()[0], "ref_peak_mib": results["upstream"]["peak_rss_mib"],
            "ours_peak_mib": results["ours"]["peak_rss_mib"]}))


if __name__ == "__main__":
    main()
