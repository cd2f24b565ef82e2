#!/usr/bin/env python3
"""Benchmark: do the bandwidth limits hold within +-10% over 30 s windows?

Run by hand, as root (not a test):
    python3 bench/limits.py [--bin DIR] [--mib 512] [--seconds 90]

Everything runs in a network namespace of its own with only `lo` (`enter_netns` from
`bench/transfer.py`, which also gives the node helpers `Licet`, `make_file` and `sign`). One
release of `--mib` MiB of random bytes (1 MiB chunks) is signed once; each case starts fresh
nodes on loopback, starts the download(s) with `get --detach`, and from the first byte on samples
once a second, for `--seconds` seconds, the bytes each limit governs:

1. seeder `--upload-limit 4MB/s`, one downloader: the downloader's `licet_bytes_in_total`;
2. downloader `--download-limit 2MB/s`, seeder unlimited: the same;
3. seeder `--peer-upload-limit 1MB/s`, two downloaders: the bytes the seeder sent to each one
   (its `GET /v1/peers`, `bytes_out` per peer), since the two downloaders also trade chunks
   with each other, which no limit governs here;
4. seeder `--upload-limit 4MB/s`, one downloader, and `licet-node limits set --upload 2MB/s` on
   the seeder half-way: the downloader's bytes, in the windows before and after the change.

Each 30 s window's rate (MB/s, 10^6 bytes) is set against the limit in force (ratio); the table
gives every window, the median ratio, and whether every window was within +-10%. After each case
it checks that the downloads are still going (a throttled seeder must not be banned) and prints
the seeder's `Busy` answers and the time chunks waited on its limits.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transfer import MIB, ROOT, Licet, enter_netns, make_file, sign, sh  # noqa: E402

WINDOW = 30.0
TOLERANCE = 0.10
MB = 1e6


def default_bin_dir():
    """The release folder of the workspace's target directory (what `cargo build --release`
    writes), found as `bench/transfer.py` finds it; nothing is built here."""
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                          capture_output=True, text=True)
    if meta.returncode != 0:
        return os.path.join(ROOT, "target", "release")
    return os.path.join(json.loads(meta.stdout)["target_directory"], "release")


def api_get(data, path):
    """GET `path` from the daemon of data dir `data`, with its bearer token."""
    addr = open(os.path.join(data, "api-addr")).read().strip()
    token = open(os.path.join(data, "api-token")).read().strip()
    req = urllib.request.Request(f"http://{addr}{path}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def bytes_sent_to(seeder_data, peer_ids):
    """What the seeder has sent to each of `peer_ids` in chunks (0 before it knows the peer)."""
    sent = {p["peer_id"]: p["bytes_out"] for p in api_get(seeder_data, "/v1/peers")["peers"]}
    return [float(sent.get(peer, 0)) for peer in peer_ids]


class Case:
    """One measurement: nodes started, a way to read the counters, and the limits in force."""

    def __init__(self, licet, work, link, content, manifest, publisher, name):
        self.licet, self.work, self.link = licet, work, link
        self.content, self.manifest, self.publisher, self.name = content, manifest, publisher, name
        self.dirs = []

    def seeder(self, *flags):
        proc, data = self.licet.start(f"{self.name}-seeder", *flags)
        self.licet.client(data, "trust", "add", self.publisher)
        self.licet.client(data, "add", self.manifest, "--content", self.content)
        self.dirs.append(data)
        return data, self.licet.client(data, "status")["listen_addrs"][0]

    def downloader(self, index, seed_addr, *flags):
        proc, data = self.licet.start(f"{self.name}-dl{index}", "--bootstrap", seed_addr, *flags)
        self.licet.client(data, "trust", "add", self.publisher)
        self.dirs.append(data)
        return data

    def get(self, data, index):
        out = os.path.join(self.work, f"{self.name}-out{index}")
        self.dirs.append(out)
        self.licet.client(data, "get", self.link, "-o", out, "--detach")

    def cleanup(self):
        self.licet.stop_all()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def sample(read, seconds, at=None):
    """Calls `read()` (a list of byte counters) once a second from the first byte on, for
    `seconds` s; `at` is (second, action) to run once during it. Returns [(t, counters)]."""
    deadline = time.monotonic() + 60
    while sum(read()) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("no byte arrived within 60 s of `get`")
        time.sleep(0.05)
    start = time.monotonic()
    samples = [(0.0, read())]
    step = 1
    while step <= seconds:
        time.sleep(max(0.0, start + step - time.monotonic()))
        samples.append((time.monotonic() - start, read()))
        if at and step == at[0]:
            at[1]()
        step += 1
    return samples


def windows(samples, column, bounds):
    """Rate in bytes/s of counter `column` over each (from, to) second of `bounds`."""
    def nearest(t):
        return min(samples, key=lambda s: abs(s[0] - t))
    rates = []
    for lo, hi in bounds:
        (t0, c0), (t1, c1) = nearest(lo), nearest(hi)
        rates.append((c1[column] - c0[column]) / (t1 - t0))
    return rates


def row(case, limit_text, limit, rates):
    ratios = [r / limit for r in rates]
    within = all(abs(q - 1) <= TOLERANCE for q in ratios)
    cells = ", ".join(f"{r / MB:.3f} ({q:.3f})" for r, q in zip(rates, ratios))
    return (f"| {case} | {limit_text} | {cells} | {statistics.median(ratios):.3f} | "
            f"{'yes' if within else 'no'} |")


def still_going(licet, data):
    """Every download of the node is still fetching or done, none failed or stalled for want of
    a peer (a throttled seeder taken for a stalling one would be banned and leave it without)."""
    states = [c["state"] for c in licet.client(data, "ls")["content"]]
    if not states or any(s == "failed" for s in states):
        raise RuntimeError(f"a download under a limit is {states or 'gone'}")
    banned = [p["peer_id"] for p in licet.client(data, "peers")["peers"] if p["banned"]]
    if banned:
        raise RuntimeError(f"a downloader banned {banned} under a limit")


def seeder_notes(licet, seeder):
    busy = licet.metric(seeder, "licet_rate_limit_busy_total")
    waited = licet.metric(seeder, 'licet_rate_limit_wait_seconds_total{direction="upload"}')
    return f"seeder answered Busy {busy:.0f} times, chunks waited {waited:.0f} s on its limits"


def run_cases(args, licet, work, link, content, manifest, publisher):
    secs = args.seconds
    full = [(lo, lo + WINDOW) for lo in range(0, int(secs - WINDOW) + 1, int(WINDOW))]
    rows, notes = [], []

    def simple(name, label, limit_text, seed_flags, dl_flags):
        case = Case(licet, work, link, content, manifest, publisher, name)
        try:
            seeder, addr = case.seeder(*seed_flags)
            dl = case.downloader(0, addr, *dl_flags)
            case.get(dl, 0)
            samples = sample(lambda: [licet.metric(dl, "licet_bytes_in_total")], secs)
            still_going(licet, dl)
            rows.append(row(label, limit_text, parse_rate(limit_text), windows(samples, 0, full)))
            notes.append(f"{label}: {seeder_notes(licet, seeder)}")
        finally:
            case.cleanup()

    print("case 1: seeder --upload-limit 4MB/s ...", flush=True)
    simple("up", "1. seeder upload limit, 1 downloader", "4MB/s",
           ["--upload-limit", "4MB/s"], [])
    print("case 2: downloader --download-limit 2MB/s ...", flush=True)
    simple("down", "2. downloader download limit, seeder unlimited", "2MB/s",
           [], ["--download-limit", "2MB/s"])

    print("case 3: seeder --peer-upload-limit 1MB/s, two downloaders ...", flush=True)
    case = Case(licet, work, link, content, manifest, publisher, "peer")
    try:
        seeder, addr = case.seeder("--peer-upload-limit", "1MB/s")
        dls = [case.downloader(i, addr) for i in range(2)]
        ids = [licet.client(d, "status")["peer_id"] for d in dls]
        for i, d in enumerate(dls):
            case.get(d, i)
        samples = sample(lambda: bytes_sent_to(seeder, ids)
                         + [licet.metric(d, "licet_bytes_in_total") for d in dls], secs)
        for d in dls:
            still_going(licet, d)
        for i in range(2):
            rows.append(row(f"3. seeder per-peer upload limit, to downloader {i + 1} of 2",
                            "1MB/s", 1 * MB, windows(samples, i, full)))
        received = [samples[-1][1][2 + i] / samples[-1][0] / MB for i in range(2)]
        notes.append("3.: " + seeder_notes(licet, seeder) + "; the downloaders received "
                     + " and ".join(f"{r:.2f} MB/s" for r in received)
                     + " in all (from the seeder and from each other)")
    finally:
        case.cleanup()

    print("case 4: seeder --upload-limit 4MB/s, `limits set --upload 2MB/s` half-way ...",
          flush=True)
    change = int(secs // 2)
    case = Case(licet, work, link, content, manifest, publisher, "change")
    try:
        seeder, addr = case.seeder("--upload-limit", "4MB/s")
        dl = case.downloader(0, addr)
        case.get(dl, 0)
        set_at = []

        def lower():
            licet.client(seeder, "limits", "set", "--upload", "2MB/s")
            set_at.append(True)
        samples = sample(lambda: [licet.metric(dl, "licet_bytes_in_total")], secs,
                         at=(change, lower))
        if not set_at:
            raise RuntimeError("the runtime change was not made")
        still_going(licet, dl)
        before = [(lo, lo + WINDOW) for lo in (change - WINDOW, 0) if lo >= 0]
        before = sorted(set(before))
        after = [(lo, lo + WINDOW) for lo in (change, secs - WINDOW) if lo + WINDOW <= secs]
        after = sorted(set(after))
        rows.append(row(f"4. runtime change at {change} s: before", "4MB/s", 4 * MB,
                        windows(samples, 0, before)))
        rows.append(row(f"4. runtime change at {change} s: after `limits set --upload 2MB/s`",
                        "2MB/s", 2 * MB, windows(samples, 0, after)))
        notes.append("4.: windows " + ", ".join(f"{lo:.0f}-{hi:.0f} s" for lo, hi in before)
                     + " before, " + ", ".join(f"{lo:.0f}-{hi:.0f} s" for lo, hi in after)
                     + " after; " + seeder_notes(licet, seeder))
    finally:
        case.cleanup()
    return rows, notes


def parse_rate(text):
    """`4MB/s` -> 4e6 (only the decimal MB/s the cases use)."""
    assert text.endswith("MB/s")
    return float(text[:-4]) * MB


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--bin", default=None, metavar="DIR",
                        help="folder with licet-node and licet-manifest (default: the release "
                             "folder of the workspace's target directory)")
    parser.add_argument("--mib", type=int, default=512,
                        help="size of the release in MiB; it must outlast a case (default 512)")
    parser.add_argument("--seconds", type=int, default=90,
                        help="how long each case is measured, from its first byte (default 90; "
                             "at least 60, for two 30 s windows)")
    parser.add_argument("--workdir", default=None,
                        help="keep the release and the nodes' logs here (default: a temporary "
                             "folder, removed at the end)")
    args = parser.parse_args()
    if args.seconds < 2 * WINDOW:
        sys.exit(f"--seconds {args.seconds}: at least {2 * WINDOW:.0f} are needed, for two "
                 f"{WINDOW:.0f} s windows (before and after the runtime change)")
    if args.mib * MIB < 4.4 * MB * args.seconds:
        sys.exit(f"--mib {args.mib}: too small to last {args.seconds} s at 4 MB/s (+10%); "
                 f"give at least {int(4.4 * MB * args.seconds / MIB) + 1}")
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark makes a network namespace of its own")
    bin_dir = os.path.abspath(args.bin or default_bin_dir())
    node_bin, manifest_bin = (os.path.join(bin_dir, b) for b in ("licet-node", "licet-manifest"))
    for b in (node_bin, manifest_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"--bin {bin_dir}: no executable {os.path.basename(b)} there "
                     "(cargo build --release -p licet-node -p licet-manifest)")
    enter_netns()
    work = args.workdir or tempfile.mkdtemp(prefix="licet-limits-")
    os.makedirs(work, exist_ok=True)
    licet = Licet(node_bin, manifest_bin, work)
    try:
        key = os.path.join(work, "publisher.pem")
        if not os.path.exists(key):
            sh(manifest_bin, "keygen", "-o", key, stdout=subprocess.DEVNULL)
        publisher = subprocess.run([manifest_bin, "pubkey", key], check=True,
                                   capture_output=True, text=True).stdout.strip()
        content = os.path.join(work, "release")
        os.makedirs(content, exist_ok=True)
        make_file(os.path.join(content, "film.bin"), args.mib)
        manifest = os.path.join(work, "film.manifest")
        link = sign(licet, content, key, manifest)
        rows, notes = run_cases(args, licet, work, link, content, manifest, publisher)
    finally:
        licet.stop_all()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.mib} MiB release, 1 MiB chunks, {args.seconds} s per case from the first "
          f"byte, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, loopback in a namespace "
          "of its own\n")
    print("| case | limit | 30 s windows: MB/s (ratio to the limit) | median ratio | "
          "every window within ±10% |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(r)
    print()
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()
