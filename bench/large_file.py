#!/usr/bin/env python3
"""Benchmark: one large file in the smallest chunks, seeded by one node and fetched by another.

Run by hand, as root (not a test): python3 bench/large_file.py [--size-gib 4] [--runs 1]
[--chunk-size 16KiB] [--baseline DIR]

A sparse file (`truncate -s 4G`: no disk space, all zeros) signed with `--chunk-size 16KiB`
(262,144 chunks) is seeded by one `licet-node` and fetched by a fresh one on loopback, inside a
network namespace of its own (as `bench/transfer.py`, whose helpers it uses). Per download it
prints:

- the time from `get` to complete, and per GiB (every chunk verified and made durable);
- the seeder's peak RSS while it serves (its peak is reset with `/proc/PID/clear_refs` once it
  has hashed the file, so the hashing at `add` does not count) and its RSS when it is done;
- the downloader's peak RSS, and the bytes it wrote (`/proc/PID/io` `write_bytes`: the file's
  4 GiB plus what its database wrote);
- the downloader's `state.redb`: the largest seen (polled every 0.2 s), its size when `get`
  returns, and once it has settled (up to 60 s: a compaction may follow the download).

`--baseline DIR` runs another build's `licet-node` (e.g. built from the commit before a change)
with its own seeder, alternating with this build in every round, so that machine noise hits
both alike.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transfer  # noqa: E402  (the helpers: build, namespace, nodes)

GIB = 1024 ** 3


def read_proc(pid, name, field):
    with open(f"/proc/{pid}/{name}") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def sign(manifest_bin, content_dir, key, out, chunk_size):
    transfer.sh(manifest_bin, "create", content_dir, "--key", key, "--title", "large",
                "--chunk-size", chunk_size, "-o", out, "--force", stdout=subprocess.DEVNULL)
    shown = transfer.json.loads(subprocess.run([manifest_bin, "inspect", out, "--json"],
                                               check=True, capture_output=True).stdout)
    return "licet:" + shown["derived"]["manifest_id"]


class Watch:
    """Polls a file's size in a thread; `peak` is the largest seen."""

    def __init__(self, path):
        self.path, self.peak, self.stop = path, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, os.path.getsize(self.path))
            except OSError:
                pass
            time.sleep(0.2)

    def done(self):
        self.stop.set()
        self.thread.join()
        return self.peak


def settled_size(path, timeout=60.0):
    """The file's size once it has not changed for 3 s (at most `timeout`)."""
    deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        size = os.path.getsize(path)
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= 3:
            break
        time.sleep(0.2)
    return last


def download(licet, name, seeder, seed_addr, publisher, link, out_dir, size):
    proc, data = licet.start(name, "--bootstrap", seed_addr)
    licet.client(data, "trust", "add", publisher)
    shutil.rmtree(out_dir, ignore_errors=True)
    # The seeder's peak from here on: serving, not hashing at `add`.
    with open(f"/proc/{seeder.pid}/clear_refs", "w") as f:
        f.write("5")
    state = os.path.join(data, "state.redb")
    watch = Watch(state)
    start = time.perf_counter()
    info = licet.client(data, "get", link, "-o", out_dir)
    elapsed = time.perf_counter() - start
    at_complete = os.path.getsize(state)
    peak_db = watch.done()
    if info["state"] != "complete":
        raise RuntimeError(f"download ended {info['state']}: {info.get('error')}")
    after_db = settled_size(state)
    row = {
        "seconds": elapsed,
        "s_per_gib": elapsed / (size / GIB),
        "seeder_peak_rss_mib": read_proc(seeder.pid, "status", "VmHWM:") / 1024,
        "seeder_rss_mib": read_proc(seeder.pid, "status", "VmRSS:") / 1024,
        "downloader_peak_rss_mib": read_proc(proc.pid, "status", "VmHWM:") / 1024,
        "downloader_written_gib": read_proc(proc.pid, "io", "write_bytes:") / GIB,
        "state_peak_mib": max(peak_db, after_db) / 2 ** 20,
        "state_at_complete_mib": at_complete / 2 ** 20,
        "state_after_mib": after_db / 2 ** 20,
    }
    licet.stop(proc)
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--chunk-size", default="16KiB",
                        help="as licet-manifest create takes it (1MiB: the serving path at the "
                             "default chunk size)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="a folder with another build's licet-node, run beside this one")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark makes a network namespace of its own")
    node_bin, manifest_bin = transfer.build_licet()
    transfer.enter_netns()
    work = args.workdir or tempfile.mkdtemp(prefix="licet-large-")
    os.makedirs(work, exist_ok=True)
    builds = {"this": transfer.Licet(node_bin, manifest_bin, work)}
    if args.baseline:
        baseline_bin = os.path.join(os.path.abspath(args.baseline), "licet-node")
        if not os.access(baseline_bin, os.X_OK):
            sys.exit(f"--baseline: {baseline_bin} is not an executable licet-node")
        builds["baseline"] = transfer.Licet(baseline_bin, manifest_bin, work)
    try:
        run(args, builds, manifest_bin, work)
    finally:
        for licet in builds.values():
            licet.stop_all()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def run(args, builds, manifest_bin, work):
    key = os.path.join(work, "publisher.pem")
    if not os.path.exists(key):
        transfer.sh(manifest_bin, "keygen", "-o", key, stdout=subprocess.DEVNULL)
    publisher = subprocess.run([manifest_bin, "pubkey", key], check=True, capture_output=True,
                               text=True).stdout.strip()
    content = os.path.join(work, "large")
    os.makedirs(content, exist_ok=True)
    size = args.size_gib * GIB
    transfer.sh("truncate", "-s", str(size), os.path.join(content, "large.bin"))
    manifest = os.path.join(work, "large.manifest")
    link = sign(manifest_bin, content, key, manifest, args.chunk_size)
    seeders = {}
    for name, licet in builds.items():
        print(f"{name}: seeding {args.size_gib} GiB in {args.chunk_size} chunks (hashing, not "
              "timed) ...", flush=True)
        proc, _, addr = licet.seed(f"seed-{name}", content, manifest, publisher)
        seeders[name] = (proc, addr)
    rows = {name: [] for name in builds}
    for run_index in range(args.runs):
        for name, licet in builds.items():
            proc, addr = seeders[name]
            row = download(licet, f"dl-{name}-{run_index}", proc, addr, publisher, link,
                           os.path.join(work, "out"), size)
            rows[name].append(row)
            print(f"{name} run {run_index + 1}: " +
                  ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    print(f"\n{args.size_gib} GiB sparse file, {args.chunk_size} chunks, median of {args.runs}:")
    keys = list(next(iter(rows.values()))[0].keys())
    print(f"{'':28}" + "".join(f"{name:>12}" for name in rows))
    for k in keys:
        values = [transfer.statistics.median(r[k] for r in rows[name]) for name in rows]
        print(f"{k:28}" + "".join(f"{v:12.2f}" for v in values))


if __name__ == "__main__":
    main()
