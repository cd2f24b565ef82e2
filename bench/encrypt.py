#!/usr/bin/env python3
"""Benchmark: `licet-manifest create --encrypt` against plain `create` on the same file.

Run by hand (not a test): python3 bench/encrypt.py [--size-mib 1024] [--runs 5]

On one file, alternating the two (plain, encrypted, plain, ...) so machine noise hits both
alike, it reports each one's median wall time, throughput over the plaintext and peak RSS
(GNU time around that very process), and the ratio of their throughputs. Plain `create` reads
and hashes the file; `create --encrypt` reads it, encrypts it (ChaCha20-Poly1305) into a new
folder, then reads back and hashes the ciphertext. The input is read from the page cache (it is
read once before timing); the ciphertext folder is removed between runs, outside the timing.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from create_vs_openssl import ROOT, TIME, make_file, run_measured, warm  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", default=None, help="where to put the test files")
    args = parser.parse_args()

    if not os.access(TIME, os.X_OK):
        sys.exit(f"{TIME} (GNU time) is needed for peak RSS: apt-get install time")
    print("building licet-manifest (release) ...", flush=True)
    subprocess.run(["cargo", "build", "--release", "-p", "licet-manifest", "--quiet"],
                   cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    tool = os.path.join(target, "release", "licet-manifest")

    work = args.workdir or tempfile.mkdtemp(prefix="licet-bench-")
    os.makedirs(work, exist_ok=True)
    key = os.path.join(work, "bench.pem")
    if not os.path.exists(key):
        subprocess.run([tool, "keygen", "-o", key], check=True, stdout=subprocess.DEVNULL)
    data = os.path.join(work, f"data-{args.size_mib}.bin")
    make_file(data, args.size_mib)
    encrypted = os.path.join(work, "encrypted")
    common = ["--key", key, "--title", "bench", "--force"]
    tools = {
        "create": [tool, "create", data, *common, "-o", os.path.join(work, "plain.manifest")],
        "create --encrypt": [tool, "create", data, "--encrypt", encrypted, *common,
                             "-o", os.path.join(work, "encrypted.manifest")],
    }

    results = {name: [] for name in tools}
    for run in range(args.runs):
        for name, argv in tools.items():
            shutil.rmtree(encrypted, ignore_errors=True)
            warm(data)
            results[name].append(run_measured(argv, work))
        print(f"run {run + 1}/{args.runs} done", flush=True)

    size_gb = args.size_mib * 1024 * 1024 / 1e9
    print()
    print(f"{args.size_mib} MiB file, {args.runs} alternating runs, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}")
    print()
    print("| command | median s | GB/s of plaintext | peak RSS MiB |")
    print("|---|---|---|---|")
    medians = {}
    for name, samples in results.items():
        secs = statistics.median(s for s, _ in samples)
        rss = max(r for _, r in samples)
        medians[name] = secs
        print(f"| `licet-manifest {name}` | {secs:.3f} | {size_gb / secs:.2f} | {rss:.1f} |")
    ratio = medians["create"] / medians["create --encrypt"]
    print(f"\ncreate --encrypt throughput = {ratio:.2f}x plain create")
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
