#!/usr/bin/env python3
"""Benchmark: `licet-manifest create` against `openssl dgst -sha256` and `sha256sum`.

Run by hand (not a test): python3 bench/create_vs_openssl.py [--size-mib 1024] [--runs 5]

On one file, in one run, alternating the tools (A B C A B C ...) so machine noise hits all of
them alike, it reports each tool's median wall time, throughput and peak RSS (measured by
GNU time around that very process), and the ratio of licet's throughput to openssl's. Then it runs
`create` on files of several sizes to show that its memory is flat in file size.

The file is hashed from the page cache (it is read once before timing), so this measures
hashing and copying, not the disk.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


TIME = "/usr/bin/time"


def run_measured(argv, cwd):
    """Runs argv; returns (seconds, peak RSS in MiB). Fails loudly on a non-zero exit.

    The peak RSS comes from GNU time (`/usr/bin/time -f %M`), not from this Python process's
    wait4: Linux carries a process's RSS high-water mark across exec, so a child forked from
    Python would report at least Python's own RSS. time is small, so its floor is ~2 MiB.
    """
    with tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as rss_file:
        start = time.perf_counter()
        proc = subprocess.run([TIME, "-f", "%M", "-o", rss_file.name, *argv], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()}")
        return elapsed, int(rss_file.read().split()[-1]) / 1024.0


def make_file(path, size_mib):
    if os.path.exists(path) and os.path.getsize(path) == size_mib * 1024 * 1024:
        return
    print(f"writing {size_mib} MiB of random bytes to {path} ...", flush=True)
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1024 * 1024))


def warm(path):
    with open(path, "rb") as f:
        while f.read(8 * 1024 * 1024):
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--flat-sizes-mib", default="64,256,1024,4096",
                        help="file sizes for the memory-flatness run")
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
    warm(data)

    tools = {
        "licet-manifest create": [tool, "create", data, "--key", key, "--title", "bench",
                                  "-o", os.path.join(work, "bench.manifest"), "--force"],
    }
    if shutil.which("openssl"):
        tools["openssl dgst -sha256"] = ["openssl", "dgst", "-sha256", data]
    else:
        print("openssl not found: skipping it (apt-get install openssl)")
    if shutil.which("sha256sum"):
        tools["sha256sum"] = ["sha256sum", data]
    else:
        print("sha256sum not found: skipping it")

    results = {name: [] for name in tools}
    for run in range(args.runs):
        for name, argv in tools.items():
            results[name].append(run_measured(argv, work))
        print(f"run {run + 1}/{args.runs} done", flush=True)

    size_gb = args.size_mib * 1024 * 1024 / 1e9
    print()
    print(f"{args.size_mib} MiB file, {args.runs} alternating runs, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}")
    print()
    print("| tool | median s | GB/s | peak RSS MiB |")
    print("|---|---|---|---|")
    medians = {}
    for name, samples in results.items():
        secs = statistics.median(s for s, _ in samples)
        rss = max(r for _, r in samples)
        medians[name] = secs
        print(f"| {name} | {secs:.3f} | {size_gb / secs:.2f} | {rss:.1f} |")
    if "openssl dgst -sha256" in medians:
        ratio = medians["openssl dgst -sha256"] / medians["licet-manifest create"]
        print(f"\nlicet-manifest create throughput = {ratio:.2f}x openssl dgst -sha256")
    if "sha256sum" in medians:
        ratio = medians["sha256sum"] / medians["licet-manifest create"]
        print(f"licet-manifest create throughput = {ratio:.2f}x sha256sum")

    print("\nmemory against file size (licet-manifest create):\n")
    print("| file MiB | peak RSS MiB | GB/s |")
    print("|---|---|---|")
    for size in [int(s) for s in args.flat_sizes_mib.split(",") if s]:
        path = os.path.join(work, f"data-{size}.bin")
        make_file(path, size)
        warm(path)
        secs, rss = run_measured([tool, "create", path, "--key", key, "--title", "flat",
                                  "-o", os.path.join(work, "flat.manifest"), "--force"], work)
        print(f"| {size} | {rss:.1f} | {size * 1024 * 1024 / 1e9 / secs:.2f} |")
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
