#!/usr/bin/env python3
"""Benchmark: one download of the same file with licet, HTTP (nginx -> curl) and BitTorrent (rqbit).

Run by hand, as root (not a test): python3 bench/transfer.py [--size-mib 1024] [--runs 3]

Everything runs inside a network namespace of its own (`unshare --net`, only `lo`, brought up
here), so no byte leaves the machine and nothing else on it is reachable. On the same random
file, alternating the tools in every round (A B C D, A B C D, ...) so that machine noise hits
all of them alike, it times:

- licet: a seeding node and a fresh downloading node; from `licet-node get` to the file complete,
  every chunk verified against the signed merkle root and made durable (fsync) before it counts;
- HTTP, the upper reference: nginx (`sendfile on`) -> `curl -o file`;
- BitTorrent: rqbit seeding, rqbit downloading with `--initial-peers` (DHT, UPnP, LSD and
  trackers off), a 1 MiB-piece torrent made by mktorrent; every piece SHA-1-checked;
- the hash limit: `openssl dgst -sha256` of the file.

It prints the median wall time, GB/s and the downloader's peak RSS of each, and the ratios. Then
(licet only): a swarm of one seeder and five downloaders started together on a smaller file
(time until all are done against one lone download, and what the seeder uploaded), the idle RSS
of a node, the downloader's peak RSS at two file sizes (memory must be flat), and a swarm of 50
nodes: the median provider lookup (from each node's `licet_provider_lookup_seconds`) and the
median time from `get` to the first verified chunk on disk
(`licet_download_first_chunk_seconds`) with a warm DHT. `--only PART` runs one part.

`--baseline DIR` adds another build of licet (a `licet-node` in DIR, e.g. one built from the
commit before a change) to the single download and the swarm: its own seeder and downloaders,
timed in the same (alternating) rounds, so that a change is measured side by side with what it
replaced.

It installs what it needs (nginx-light and mktorrent with apt-get, rqbit with cargo install) and
skips a tool it cannot get, saying so.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_NETNS = "LICET_BENCH_IN_NETNS"
TIME = "/usr/bin/time"
MIB = 1024 * 1024


def enter_netns():
    """Re-runs this script in a new network namespace with only loopback, up."""
    if os.environ.get(IN_NETNS) == "1":
        return
    if not shutil.which("unshare") or not shutil.which("ip"):
        sys.exit("unshare and ip (util-linux, iproute2) are needed for the loopback-only namespace")
    env = dict(os.environ, **{IN_NETNS: "1"})
    argv = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
            sys.executable, *sys.argv]
    os.execvpe("unshare", argv, env)


def sh(*argv, **kw):
    return subprocess.run(list(argv), check=True, **kw)


def ensure_tools(skip_rqbit):
    """Installs what is missing; returns the set of tools available."""
    have = set()
    missing_apt = [pkg for cmd, pkg in [("nginx", "nginx-light"), ("mktorrent", "mktorrent")]
                   if not shutil.which(cmd)]
    if missing_apt:
        print(f"installing {' '.join(missing_apt)} with apt-get ...", flush=True)
        subprocess.run(["sh", "-c", "apt-get update -qq && apt-get install -y -qq " +
                        " ".join(missing_apt)], stdout=subprocess.DEVNULL)
    if shutil.which("nginx"):
        have.add("nginx")
    else:
        print("nginx not available: the HTTP reference is skipped")
    if not skip_rqbit and not shutil.which("rqbit"):
        print("installing rqbit with cargo install (takes a while) ...", flush=True)
        subprocess.run(["cargo", "install", "rqbit", "--locked", "--quiet"])
    if shutil.which("rqbit") and shutil.which("mktorrent"):
        have.add("rqbit")
    else:
        print("rqbit or mktorrent not available: BitTorrent is skipped")
    if shutil.which("openssl"):
        have.add("openssl")
    if not os.access(TIME, os.X_OK):
        sys.exit(f"{TIME} (GNU time) is needed for peak RSS: apt-get install time")
    return have


def build_licet():
    print("building licet-node and licet-manifest (release) ...", flush=True)
    sh("cargo", "build", "--release", "-p", "licet-node", "-p", "licet-manifest", "--quiet",
       cwd=ROOT)
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                                     cwd=ROOT, check=True, capture_output=True).stdout)
    release = os.path.join(meta["target_directory"], "release")
    return os.path.join(release, "licet-node"), os.path.join(release, "licet-manifest")


def make_file(path, size_mib):
    if os.path.exists(path) and os.path.getsize(path) == size_mib * MIB:
        return
    print(f"writing {size_mib} MiB of random bytes to {path} ...", flush=True)
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MIB))


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def timed(argv, cwd=None):
    """Runs argv under GNU time; returns (seconds, peak RSS MiB)."""
    with tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as out:
        start = time.perf_counter()
        proc = subprocess.run([TIME, "-f", "%M", "-o", out.name, *argv], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
        return elapsed, int(out.read().split()[-1]) / 1024.0


class Licet:
    """Nodes in a work directory: `start` runs a daemon, the client calls go to its API."""

    def __init__(self, node_bin, manifest_bin, work):
        self.node_bin, self.manifest_bin, self.work = node_bin, manifest_bin, work
        self.procs = []
        # On loopback: no LAN discovery, no router port mapping (a baseline build older than
        # those flags has neither).
        run_help = subprocess.run([node_bin, "run", "--help"], capture_output=True, text=True).stdout
        self.loopback_flags = ["--no-mdns", "--no-upnp"] if "--no-mdns" in run_help else []

    def start(self, name, *extra):
        data = os.path.join(self.work, name)
        shutil.rmtree(data, ignore_errors=True)
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        proc = subprocess.Popen([self.node_bin, "run", "--data-dir", data, "--listen",
                                 "/ip4/127.0.0.1/tcp/0", *self.loopback_flags, *extra],
                                stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="warn"))
        self.procs.append(proc)
        for _ in range(300):
            if os.path.exists(os.path.join(data, "api-addr")):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"node {name} did not start; see {log.name}")
        return proc, data

    def client(self, data, *args):
        out = subprocess.run([self.node_bin, "--data-dir", data, *args, "--json"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"licet-node {' '.join(args)} failed ({out.returncode}): "
                               f"{out.stderr.strip()}")
        return json.loads(out.stdout)

    def metric(self, data, name):
        addr = open(os.path.join(data, "api-addr")).read().strip()
        for line in urllib.request.urlopen(f"http://{addr}/metrics").read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def stop(self, proc):
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                self.stop(proc)
        self.procs = []

    def seed(self, name, content_dir, manifest, publisher):
        proc, data = self.start(name)
        self.client(data, "trust", "add", publisher)
        self.client(data, "add", manifest, "--content", content_dir)
        addr = self.client(data, "status")["listen_addrs"][0]
        return proc, data, addr

    def seed_new_file(self, name, size_mib, key, publisher):
        """Writes `size_mib` MiB of random bytes to WORK/NAME/NAME.bin, signs it and seeds it
        from a node of its own; returns (link, seeder process, its data dir, its address, file)."""
        content = os.path.join(self.work, name)
        os.makedirs(content, exist_ok=True)
        path = os.path.join(content, f"{name}.bin")
        make_file(path, size_mib)
        manifest = os.path.join(self.work, f"{name}.manifest")
        link = sign(self, content, key, manifest)
        proc, data, addr = self.seed(f"{name}-seeder", content, manifest, publisher)
        return link, proc, data, addr, path

    def download(self, name, bootstrap, publisher, link, out_dir):
        """A fresh node fetches `link`; returns (seconds from get to complete, its peak RSS)."""
        proc, data = self.start(name, "--bootstrap", bootstrap)
        self.client(data, "trust", "add", publisher)
        shutil.rmtree(out_dir, ignore_errors=True)
        start = time.perf_counter()
        info = self.client(data, "get", link, "-o", out_dir)
        elapsed = time.perf_counter() - start
        if info["state"] != "complete":
            raise RuntimeError(f"licet download ended {info['state']}: {info.get('error')}")
        rss = peak_rss_mib(proc.pid)
        self.stop(proc)
        return elapsed, rss


def sign(licet, content_dir, key, out):
    sh(licet.manifest_bin, "create", content_dir, "--key", key, "--title", "bench", "-o", out,
       "--force", stdout=subprocess.DEVNULL)
    shown = json.loads(subprocess.run([licet.manifest_bin, "inspect", out, "--json"],
                                      check=True, capture_output=True).stdout)
    return "licet:" + shown["derived"]["manifest_id"]


def nginx_start(work, root_dir, port):
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        # The worker runs as root: the work directory is private to this user (mkdtemp, 0700).
        f.write(f"""daemon off; user root; worker_processes 1; error_log {work}/nginx.err;
pid {work}/nginx.pid;
events {{ worker_connections 64; }}
http {{ sendfile on; tcp_nopush on; access_log off; types {{ }} default_type application/octet-stream;
  server {{ listen 127.0.0.1:{port}; root {root_dir}; }} }}
""")
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", work], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def rqbit_common(port):
    return ["rqbit", "--disable-dht", "--disable-dht-persistence", "--disable-upnp-port-forward",
            "--disable-lsd", "--disable-trackers", "--listen-ip", "127.0.0.1", "--listen-port",
            str(port)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--swarm-mib", type=int, default=256)
    parser.add_argument("--flat-mib", type=int, default=4096,
                        help="a second, larger size for the downloader's peak RSS")
    parser.add_argument("--skip-rqbit", action="store_true", help="do not install or run rqbit")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--only", choices=PARTS, default=None,
                        help="run one part of the benchmark (default: all of them)")
    parser.add_argument("--lookup-nodes", type=int, default=50)
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="a folder with another build's licet-node, timed beside this one "
                             "in the single download and the swarm")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark makes a network namespace of its own")
    # Installs and builds need the package registries: they happen before the namespace (and
    # are no-ops when the script runs again inside it).
    have = ensure_tools(args.skip_rqbit)
    node_bin, manifest_bin = build_licet()
    enter_netns()
    work = args.workdir or tempfile.mkdtemp(prefix="licet-transfer-")
    os.makedirs(work, exist_ok=True)
    licet = Licet(node_bin, manifest_bin, work)
    baseline = None
    if args.baseline:
        baseline_bin = os.path.join(os.path.abspath(args.baseline), "licet-node")
        if not os.access(baseline_bin, os.X_OK):
            sys.exit(f"--baseline: {baseline_bin} is not an executable licet-node")
        baseline = Licet(baseline_bin, manifest_bin, work)
    try:
        run_all(args, have, licet, work, baseline)
    finally:
        licet.stop_all()
        if baseline:
            baseline.stop_all()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


PARTS = ["single", "swarm", "memory", "lookup"]


def run_all(args, have, licet, work, baseline):
    key = os.path.join(work, "publisher.pem")
    if not os.path.exists(key):
        sh(licet.manifest_bin, "keygen", "-o", key, stdout=subprocess.DEVNULL)
    publisher = subprocess.run([licet.manifest_bin, "pubkey", key], check=True,
                               capture_output=True, text=True).stdout.strip()
    single_rss = None
    for part in PARTS:
        if args.only in (None, part):
            if part == "single":
                single_rss = single(args, have, licet, work, key, publisher, baseline)
            elif part == "swarm":
                swarm(args, licet, work, key, publisher, baseline)
            elif part == "memory":
                memory(args, licet, work, key, publisher, single_rss)
            else:
                lookup(args, licet, work, key, publisher)


def single(args, have, licet, work, key, publisher, baseline=None):
    """licet (and a baseline build of it), nginx -> curl, rqbit and openssl on one file,
    alternating; returns licet's RSS."""
    print("seeding with licet (hashing once, not timed) ...", flush=True)
    link, _, _, seed_addr, data = licet.seed_new_file("film", args.size_mib, key, publisher)
    size = os.path.getsize(data)
    out = os.path.join(work, "out")

    tools = {"licet": lambda i: licet.download(f"dl{i}", seed_addr, publisher, link,
                                               os.path.join(out, "licet"))}
    if baseline:
        print("seeding the same file with the baseline build ...", flush=True)
        _, _, base_addr = baseline.seed("film-baseline-seeder", os.path.dirname(data),
                                        os.path.join(work, "film.manifest"), publisher)
        tools["licet (baseline build)"] = lambda i: baseline.download(
            f"base-dl{i}", base_addr, publisher, link, os.path.join(out, "licet-baseline"))
    nginx = None
    if "nginx" in have:
        nginx = nginx_start(work, os.path.dirname(data), 18080)
        tools["nginx -> curl"] = lambda i: timed(
            ["curl", "-sf", "-o", os.path.join(out, "curl.bin"), "http://127.0.0.1:18080/film.bin"])
    rqbit_seed = None
    if "rqbit" in have:
        # rqbit seeds its own copy: it opens the files it seeds for writing, and the licet seeder
        # rightly stops serving a file that changes under it.
        rqbit_content = os.path.join(work, "rqbit-content")
        os.makedirs(rqbit_content, exist_ok=True)
        shutil.copyfile(data, os.path.join(rqbit_content, "film.bin"))
        torrent = os.path.join(work, "film.torrent")
        if os.path.exists(torrent):
            os.remove(torrent)
        sh("mktorrent", "-l", "20", "-a", "http://127.0.0.1:9/announce", "-o", torrent,
           os.path.join(rqbit_content, "film.bin"), stdout=subprocess.DEVNULL)
        rqbit_seed = subprocess.Popen(
            [*rqbit_common(16881), "download", "--disable-http-api", "--overwrite", "-o",
             rqbit_content, torrent],
            stdout=open(os.path.join(work, "rqbit-seed.log"), "w"), stderr=subprocess.STDOUT)
        time.sleep(15)  # it checks every piece it has before it seeds
        if rqbit_seed.poll() is not None:
            raise RuntimeError(f"the rqbit seeder exited; see {work}/rqbit-seed.log")
        tools["rqbit"] = lambda i: timed(
            [*rqbit_common(16882 + i), "download", "--disable-http-api", "--exit-on-finish",
             "--overwrite", "--initial-peers", "127.0.0.1:16881", "-o",
             os.path.join(out, f"rqbit{i}"), torrent])
    if "openssl" in have:
        tools["openssl dgst -sha256 (hash limit)"] = lambda i: timed(["openssl", "dgst", "-sha256", data])

    results = {name: [] for name in tools}
    try:
        for run in range(args.runs):
            for name, go in tools.items():
                os.makedirs(out, exist_ok=True)
                results[name].append(go(run))
                fetched = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
                if name != "openssl dgst -sha256 (hash limit)" and (
                        len(fetched) != 1 or os.path.getsize(fetched[0]) != size):
                    raise RuntimeError(f"{name} did not produce the whole file: {fetched}")
                shutil.rmtree(out, ignore_errors=True)
            print(f"round {run + 1}/{args.runs} done", flush=True)
    finally:
        if nginx:
            nginx.terminate()
        if rqbit_seed:
            rqbit_seed.terminate()

    gb = size / 1e9
    print(f"\n{args.size_mib} MiB file, {args.runs} alternating rounds, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}, loopback in a namespace of its own\n")
    print("| tool | median s | GB/s | downloader peak RSS MiB |")
    print("|---|---|---|---|")
    medians = {}
    for name, samples in results.items():
        secs = statistics.median(s for s, _ in samples)
        medians[name] = secs
        print(f"| {name} | {secs:.2f} | {gb / secs:.3f} | {max(r for _, r in samples):.1f} |")
    for other in ["licet (baseline build)", "rqbit", "nginx -> curl"]:
        if other in medians:
            print(f"licet throughput = {medians[other] / medians['licet']:.2f}x {other}")
    return max(r for _, r in results["licet"])


def swarm(args, licet, work, key, publisher, baseline=None):
    """One seeder, five downloaders started together, against one lone download; with a
    baseline build, both builds in alternating rounds (`--runs`), each with its own nodes."""
    builds = [("licet", licet)] + ([("licet (baseline build)", baseline)] if baseline else [])
    runs = args.runs if baseline else 1
    results = {name: [] for name, _ in builds}
    for round_ in range(runs):
        order = builds if round_ % 2 == 0 else list(reversed(builds))
        for name, build in order:
            tag = f"{'b' if build is baseline else 'n'}{round_}"
            together, lone, uploaded = swarm_once(args, build, work, key, publisher, tag)
            results[name].append((together, lone, uploaded))
            print(f"{name}, round {round_ + 1}: all 5 done in {together:.2f} s against "
                  f"{lone:.2f} s for one lone download ({together / lone:.2f}x); the seeder "
                  f"uploaded {uploaded:.2f}x the file", flush=True)
    print(f"\nswarm of 6 ({args.swarm_mib} MiB), medians of {runs} round(s):")
    for name, rows in results.items():
        together = statistics.median(r[0] for r in rows)
        lone = statistics.median(r[1] for r in rows)
        uploaded = statistics.median(r[2] for r in rows)
        print(f"  {name}: all 5 done in {together:.2f} s against {lone:.2f} s for one lone "
              f"download ({together / lone:.2f}x); the seeder uploaded {uploaded:.2f}x the file")


def swarm_once(args, licet, work, key, publisher, tag):
    """One swarm run: (seconds until all 5 are done, seconds of one lone download, what the
    seeder uploaded to the five as a multiple of the file)."""
    swarm_link, seed_proc, seed_data, swarm_seed, _ = licet.seed_new_file(
        f"swarm-{tag}", args.swarm_mib, key, publisher)
    lone, _ = licet.download(f"lone-{tag}", swarm_seed, publisher, swarm_link,
                             os.path.join(work, f"lone-out-{tag}"))
    uploaded_before = licet.metric(seed_data, "licet_bytes_out_total")
    nodes = []
    for i in range(5):
        proc, d = licet.start(f"swarm{i}-{tag}", "--bootstrap", swarm_seed)
        licet.client(d, "trust", "add", publisher)
        nodes.append((proc, d))
    start = time.perf_counter()
    gets = [subprocess.Popen([licet.node_bin, "--data-dir", d, "get", swarm_link, "-o",
                              os.path.join(work, f"swarm-out{i}-{tag}")], stdout=subprocess.DEVNULL)
            for i, (_, d) in enumerate(nodes)]
    for g in gets:
        if g.wait(600) != 0:
            raise RuntimeError("a swarm download failed")
    together = time.perf_counter() - start
    uploaded = licet.metric(seed_data, "licet_bytes_out_total") - uploaded_before
    for proc, _ in nodes + [(seed_proc, None)]:
        licet.stop(proc)
    # Each round writes seven copies of the file: give the disk back before the next.
    for name in [f"swarm-{tag}", f"lone-out-{tag}"] + [f"swarm-out{i}-{tag}" for i in range(5)]:
        shutil.rmtree(os.path.join(work, name), ignore_errors=True)
    return together, lone, uploaded / (args.swarm_mib * MIB)


def memory(args, licet, work, key, publisher, single_rss):
    """The idle RSS of a node, and the downloader's peak RSS at two sizes."""
    proc, _ = licet.start("idle")
    time.sleep(5)
    print(f"idle node RSS: {rss_mib(proc.pid):.1f} MiB")
    licet.stop(proc)
    if args.flat_mib and args.flat_mib != args.size_mib:
        big_link, _, _, big_seed, _ = licet.seed_new_file("big", args.flat_mib, key, publisher)
        secs, rss = licet.download("big-dl", big_seed, publisher, big_link,
                                   os.path.join(work, "big-out"))
        if single_rss is None:
            link, _, _, seed, _ = licet.seed_new_file("film", args.size_mib, key, publisher)
            _, single_rss = licet.download("dl", seed, publisher, link, os.path.join(work, "out"))
        print(f"downloader peak RSS: {single_rss:.1f} MiB at {args.size_mib} MiB, {rss:.1f} MiB at "
              f"{args.flat_mib} MiB ({args.flat_mib * MIB / 1e9 / secs:.3f} GB/s)")


def lookup(args, licet, work, key, publisher):
    """A swarm of `--lookup-nodes` nodes: provider lookups and the time to a first chunk."""
    count = args.lookup_nodes
    link, seed_proc, _, seed_addr, _ = licet.seed_new_file("lookup", 4, key, publisher)
    nodes = []
    for i in range(count - 1):
        # Each node bootstraps from the seeder or an earlier node, so the DHT is a mesh.
        bootstrap = seed_addr if i < 2 else licet.client(nodes[(i * 7) % len(nodes)][1],
                                                        "status")["listen_addrs"][0]
        proc, data = licet.start(f"lookup{i}", "--bootstrap", bootstrap)
        licet.client(data, "trust", "add", publisher)
        nodes.append((proc, data))
    rss = [rss_mib(p.pid) for p, _ in nodes]
    print(f"\n{count}-node swarm up; node RSS median {statistics.median(rss):.1f} MiB; "
          "letting the DHT settle for 10 s ...", flush=True)
    time.sleep(10)
    lookups, first_chunks = [], []
    for i, (_, data) in enumerate(nodes[-20:]):
        before = (licet.metric(data, "licet_provider_lookup_seconds_sum"),
                  licet.metric(data, "licet_provider_lookup_seconds_count"))
        info = licet.client(data, "get", link, "-o", os.path.join(work, f"lookup-out{i}"))
        if info["state"] != "complete":
            raise RuntimeError(f"a lookup-swarm download ended {info['state']}")
        took = licet.metric(data, "licet_provider_lookup_seconds_sum") - before[0]
        made = licet.metric(data, "licet_provider_lookup_seconds_count") - before[1]
        if made:
            lookups.append(took / made)
        first_chunks.append(licet.metric(data, "licet_download_first_chunk_seconds_sum"))
    print(f"{count}-node swarm, {len(first_chunks)} downloads of a 4 MiB file from different nodes: "
          f"provider lookup median {statistics.median(lookups) * 1000:.1f} ms "
          f"(max {max(lookups) * 1000:.1f}); get to first verified chunk on disk median "
          f"{statistics.median(first_chunks) * 1000:.1f} ms (max {max(first_chunks) * 1000:.1f})")
    for proc, _ in nodes:
        licet.stop(proc)
    licet.stop(seed_proc)


if __name__ == "__main__":
    main()
