#!/usr/bin/env python3
"""Benchmark: N real licet-node processes on one machine (default 300): takedown spread, provider
lookups, idle memory and CPU, and churn.

Run by hand (as root or not; not a test):
    python3 bench/scale.py [--nodes 300] [--wave 25] [--node-flag=--catalog-poll=30 ...]
    python3 bench/scale.py --self-test      # the unit tests of the pure parts, no nodes

Each node is a `licet-node run` process of the release build with a data directory of its own in a
temporary directory, listening on TCP at an ephemeral port of an address of its own on loopback:
127.0.1.1 to 127.0.1.100, then 127.0.2.1 and so on (a node counts connections per address and
per /24 network, so a few hundred nodes on one address would be refused as a flood). mDNS and
UPnP are off. Each node runs with `--worker-threads` / `--blocking-threads` (1 and 8 here by
default) and the harness raises its own open-file limit (inherited by the nodes) to what N
nodes need. `--node-flag` passes a flag to every node's `run` (repeat it), e.g. a connection
manager's water marks or `--catalog-poll`.

Nodes start in waves of `--wave`; each node of a wave bootstraps from 2 random nodes already
up, so every wave joins a working DHT. Every node trusts the publisher (config.toml). Then:

1. idle: after a settle time, each node's RSS, threads, descriptors and its CPU over a window
   (the nodes must idle, not spin), and the machine's load from other processes;
2. takedown: `catalog publish` of a catalog revoking a release on node 0; from each node's JSON
   log line "catalog accepted" (timestamp and `via`: publish, gossip or poll) the time until
   each node refuses it: median, p99, max, and the share by gossip and by poll; then every
   node's `/metrics` is checked (sequence, revoked count) and one node's `get` of the release
   must fail as revoked;
3. lookups: `get` of a small release (seeded by node 0) on sampled nodes; each one's
   `licet_provider_lookup_seconds` and `licet_provider_lookup_peers_contacted` against
   ceil(log2 N);
4. churn: a random `--churn` share of the nodes (not node 0) is killed (SIGKILL), a newer
   catalog is published while they are down, they are restarted; each must catch up with it
   (time from restart), none may roll back (its sequence after restart is never below the one
   it held, and an older catalog handed to it is refused), and lookups from them still work.

It prints each figure with the targets (every online node refuses within 5 s, median under 1 s;
lookups within ceil(log2 N) hops; idle node <= 25 MiB RSS) and whether they are met.
"""

import argparse
import json
import math
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024 * 1024
NODES_PER_SUBNET = 100
KAD_ALPHA, KAD_K = 3, 20  # libp2p-kad's default parallelism and bucket size
TARGET_ALL_S, TARGET_MEDIAN_S, TARGET_RSS_MIB = 5.0, 1.0, 25.0


# ---- pure parts (unit-tested by --self-test) ------------------------------------------------

def percentile(values, p):
    """The p-th percentile (0..100) of values, linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def parse_timestamp(text):
    """Seconds since the epoch of an RFC 3339 UTC timestamp as tracing writes it
    (`2026-12-03T11:44:00.123456789Z`, any number of fraction digits)."""
    if not text.endswith("Z"):
        raise ValueError(f"not a UTC timestamp: {text!r}")
    main, _, fraction = text[:-1].partition(".")
    whole = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return whole + (float("0." + fraction) if fraction else 0.0)


def accepted_catalogs(log_lines):
    """(timestamp, sequence, via) of each "catalog accepted" line of a node's JSON log; other
    and malformed lines (a line cut by a kill) are skipped."""
    found = []
    for line in log_lines:
        if "catalog accepted" not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") != "catalog accepted":
            continue
        found.append((parse_timestamp(entry["timestamp"]), int(entry["sequence"]),
                      entry.get("via", "unknown")))
    return found


def parse_metrics(text):
    """{series: value} of Prometheus text (`name{labels}` as written), comments skipped."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            series[key] = float(value)
        except ValueError:
            continue
    return series


def address_of(index):
    """The loopback address of node `index`: 127.0.1.1.. then 127.0.2.1.. (NODES_PER_SUBNET per
    /24)."""
    return f"127.0.{1 + index // NODES_PER_SUBNET}.{1 + index % NODES_PER_SUBNET}"


def cpu_seconds(stat_line):
    """utime + stime, in clock ticks, of a /proc/PID/stat line (the command may hold spaces
    and parentheses: fields are counted after the last ')')."""
    fields = stat_line[stat_line.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def summary(values, unit="", scale=1.0, digits=2):
    """`median M, p99 P, max X` of values."""
    return (f"median {statistics.median(values) * scale:.{digits}f}{unit}, "
            f"p99 {percentile(values, 99) * scale:.{digits}f}{unit}, "
            f"max {max(values) * scale:.{digits}f}{unit}")


def self_test():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert percentile(list(range(101)), 99) == 99
    assert abs(percentile([1, 2], 99) - 1.99) < 1e-9
    assert percentile([3, 1, 2], 100) == 3 and percentile([3, 1, 2], 0) == 1
    try:
        percentile([], 50)
        raise AssertionError("no error for no values")
    except ValueError:
        pass
    assert parse_timestamp("1970-01-01T00:00:01Z") == 1.0
    assert abs(parse_timestamp("2026-12-03T11:44:00.123456789Z") - 1796298240.123456789) < 1e-6
    try:
        parse_timestamp("2026-12-03T11:44:00+01:00")
        raise AssertionError("a non-UTC timestamp parsed")
    except ValueError:
        pass
    log = [
        '{"timestamp":"1970-01-01T00:00:02.5Z","level":"INFO","message":"catalog accepted",'
        '"publisher":"ab","sequence":2,"previous":"Some(1)","via":"gossip",'
        '"target":"licet_node::catalogs"}',
        '{"timestamp":"1970-01-01T00:00:03Z","level":"INFO","message":"catalog published"}',
        '{"timestamp":"1970-01-01T00:00:04Z","level":"INFO","message":"catalog acc',  # cut
        'not json, catalog accepted',
    ]
    assert accepted_catalogs(log) == [(2.5, 2, "gossip")], accepted_catalogs(log)
    metrics = parse_metrics('# HELP x y\nlicet_a_total 3\nlicet_b{via="poll"} 1.5\n\nbad line x\n')
    assert metrics == {"licet_a_total": 3.0, 'licet_b{via="poll"}': 1.5}, metrics
    assert address_of(0) == "127.0.1.1" and address_of(99) == "127.0.1.100"
    assert address_of(100) == "127.0.2.1" and address_of(299) == "127.0.3.100"
    stat = "123 (licet node (x)) S 1 2 3 4 5 6 7 8 9 10 40 2 0 0 20 0 3"
    assert cpu_seconds(stat) == 42, cpu_seconds(stat)
    rollup = smaps_rollup("55b4-7ffd ---p 00000000 00:00 0    [rollup]\nRss:  20876 kB\n"
                          "Pss:   19369 kB\nPrivate_Dirty:  3088 kB\nTHPeligible: 0\n")
    assert rollup == {"Rss": 20876, "Pss": 19369, "Private_Dirty": 3088}, rollup
    print("self-test passed")


# ---- running nodes -------------------------------------------------------------------------

def build():
    print("building licet-node and licet-manifest (release) ...", flush=True)
    subprocess.run(["cargo", "build", "--release", "-p", "licet-node", "-p", "licet-manifest",
                    "--quiet"], cwd=ROOT, check=True)
    meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                                     cwd=ROOT, check=True, capture_output=True).stdout)
    release = os.path.join(meta["target_directory"], "release")
    return os.path.join(release, "licet-node"), os.path.join(release, "licet-manifest")


def raise_open_file_limit(needed):
    """Raises this process's open-file limit (the nodes inherit it) to at least `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            soft, hard = needed, needed
        except (ValueError, OSError):
            print(f"warning: open-file limit {hard} < {needed} and not raisable (not root): "
                  "nodes may run out of descriptors", flush=True)
    new_soft = hard if hard == resource.RLIM_INFINITY or hard < needed else needed
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, new_soft), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def http_get(url, token=None, timeout=10):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return reply.read().decode()


def machine_busy_ticks():
    """(busy, total) CPU ticks of the whole machine from /proc/stat."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class Node:
    def __init__(self, index, work):
        self.index = index
        self.name = f"n{index:03d}"
        self.data = os.path.join(work, self.name)
        self.log_path = os.path.join(work, f"{self.name}.log")
        self.address = address_of(index)
        self.proc = None
        self.listen = None

    def api(self):
        return open(os.path.join(self.data, "api-addr")).read().strip()

    def token(self):
        return open(os.path.join(self.data, "api-token")).read().strip()

    def metrics(self):
        return parse_metrics(http_get(f"http://{self.api()}/metrics"))

    def status(self):
        return json.loads(http_get(f"http://{self.api()}/v1/status", self.token()))

    def accepted(self):
        try:
            with open(self.log_path, errors="replace") as log:
                return accepted_catalogs(log)
        except FileNotFoundError:
            return []

    def online(self):
        return self.proc is not None and self.proc.poll() is None


class Swarm:
    def __init__(self, args, node_bin, manifest_bin, work, publisher):
        self.args, self.node_bin, self.manifest_bin = args, node_bin, manifest_bin
        self.work, self.publisher = work, publisher
        self.nodes = [Node(i, work) for i in range(args.nodes)]
        self.env = dict(os.environ, RUST_LOG="warn,licet_node::catalogs=info",
                        LICET_WORKER_THREADS=str(args.worker_threads),
                        LICET_BLOCKING_THREADS=str(args.blocking_threads))
        self.env.pop("LICET_DATA_DIR", None)
        for pair in args.node_env:
            key, _, value = pair.partition("=")
            self.env[key] = value

    def spawn(self, node, bootstrap):
        os.makedirs(node.data, exist_ok=True)
        config = os.path.join(node.data, "config.toml")
        if not os.path.exists(config):
            with open(config, "w") as f:
                f.write(f'[[trust]]\npublisher = "{self.publisher}"\n')
        for stale in ("api-addr",):
            try:
                os.remove(os.path.join(node.data, stale))
            except FileNotFoundError:
                pass
        argv = [self.node_bin, "run", "--data-dir", node.data, "--listen",
                f"/ip4/{node.address}/tcp/0", "--no-mdns", "--no-upnp", "--log-format", "json",
                *[flag for addr in bootstrap for flag in ("--bootstrap", addr)],
                *self.args.node_flag]
        log = open(node.log_path, "a")
        node.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=self.env,
                                     stdin=subprocess.DEVNULL)
        log.close()

    def wait_up(self, nodes, timeout=120):
        """Waits until each node's API answers; records its listen address."""
        deadline = time.monotonic() + timeout
        for node in nodes:
            while True:
                if node.proc.poll() is not None:
                    raise RuntimeError(f"{node.name} exited {node.proc.returncode}; see "
                                       f"{node.log_path}")
                try:
                    addrs = node.status()["listen_addrs"]
                    if addrs:
                        node.listen = addrs[0]
                        break
                except (OSError, ValueError, KeyError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{node.name} not up within {timeout} s; see "
                                       f"{node.log_path}")
                time.sleep(0.1)

    def start_all(self):
        first = self.nodes[0]
        self.spawn(first, [])
        self.wait_up([first])
        up = [first]
        rest = self.nodes[1:]
        started = time.monotonic()
        for wave_start in range(0, len(rest), self.args.wave):
            wave = rest[wave_start:wave_start + self.args.wave]
            for node in wave:
                self.spawn(node, [n.listen for n in random.sample(up, min(2, len(up)))])
            self.wait_up(wave)
            up.extend(wave)
            print(f"  {len(up)} nodes up ({time.monotonic() - started:.0f} s)", flush=True)
            time.sleep(self.args.wave_pause)

    def client(self, node, *args, check=True):
        out = subprocess.run([self.node_bin, "--data-dir", node.data, *args, "--json"],
                             capture_output=True, text=True, timeout=300)
        if check and out.returncode != 0:
            raise RuntimeError(f"{node.name}: licet-node {' '.join(args)} failed "
                               f"({out.returncode}): {out.stderr.strip()}")
        return out

    def kill(self, node):
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()

    def stop_all(self):
        for node in self.nodes:
            if node.online():
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(30)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()

    def wait_sequence(self, nodes, sequence, timeout):
        """Waits until every node logged accepting `sequence` (or a later one); returns those
        that did not in time."""
        deadline = time.monotonic() + timeout
        waiting = list(nodes)
        while waiting and time.monotonic() < deadline:
            waiting = [n for n in waiting if not any(s >= sequence for _, s, _ in n.accepted())]
            if waiting:
                time.sleep(0.25)
        return waiting


def manifest(manifest_bin, *args):
    return subprocess.run([manifest_bin, *args], check=True, capture_output=True,
                          text=True).stdout


def prepare_releases(manifest_bin, work):
    """The publisher's key, two small releases (one to take down, one to look up) and catalogs
    1 (lists both), 2 (revokes the first) and 3 (the same, newer, for churn)."""
    key = os.path.join(work, "publisher.pem")
    publisher = manifest(manifest_bin, "keygen", "-o", key).strip().split()[-1]
    links = {}
    for name, size in (("takedown", 64 * 1024), ("lookup", 256 * 1024)):
        content = os.path.join(work, f"{name}-release")
        os.makedirs(content, exist_ok=True)
        with open(os.path.join(content, f"{name}.bin"), "wb") as f:
            f.write(os.urandom(size))
        out = os.path.join(work, f"{name}.manifest")
        created = json.loads(manifest(manifest_bin, "create", content, "--key", key, "--title",
                                      name, "-o", out, "--json"))
        links[name] = (out, content, created["manifest_id"], created["link"])
    draft = os.path.join(work, "draft.json")
    manifest(manifest_bin, "catalog", "new", "--key", key, "-o", draft)
    manifest(manifest_bin, "catalog", "add", draft, links["takedown"][0], links["lookup"][0])
    catalogs = []
    for sequence in (1, 2, 3):
        if sequence == 2:
            manifest(manifest_bin, "catalog", "revoke", draft, links["takedown"][0])
        out = os.path.join(work, f"catalog.{sequence}")
        manifest(manifest_bin, "catalog", "sign", draft, "--key", key, "--expires", "+1d", "-o",
                 out)
        catalogs.append(out)
    return publisher, links, catalogs


def idle_figures(swarm, window):
    """RSS, threads, descriptors and CPU of every online node over `window` seconds, and the
    machine's busy share from other processes."""
    online = [n for n in swarm.nodes if n.online()]
    ticks = os.sysconf("SC_CLK_TCK")

    def our_ticks():
        total = 0
        for n in online:
            try:
                total += cpu_seconds(open(f"/proc/{n.proc.pid}/stat").read())
            except OSError:
                pass
        return total

    sample = random.sample(online, min(20, len(online)))

    def trimmed():
        return sum(n.metrics().get("licet_connections_trimmed_total", 0.0) for n in sample)

    trimmed_before = trimmed()
    before_ours, (before_busy, before_all) = our_ticks(), machine_busy_ticks()
    start = time.monotonic()
    time.sleep(window)
    after_ours, (after_busy, after_all) = our_ticks(), machine_busy_ticks()
    trims_per_node_s = (trimmed() - trimmed_before) / len(sample) / (time.monotonic() - start)
    elapsed = time.monotonic() - start
    cores = os.cpu_count()
    ours_cores = (after_ours - before_ours) / ticks / elapsed
    machine_cores = (after_busy - before_busy) / max(1, after_all - before_all) * cores
    rss, pss, private, threads, fds = [], [], [], [], []
    for n in online:
        for line in open(f"/proc/{n.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                rss.append(int(line.split()[1]) / 1024.0)
            elif line.startswith("Threads:"):
                threads.append(int(line.split()[1]))
        rollup = smaps_rollup(open(f"/proc/{n.proc.pid}/smaps_rollup").read())
        pss.append(rollup.get("Pss", 0) / 1024.0)
        private.append((rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)) / 1024.0)
        fds.append(len(os.listdir(f"/proc/{n.proc.pid}/fd")))
    peers = [n.metrics().get("licet_peers_connected", float("nan")) for n in sample]
    return {
        "rss": rss, "pss": pss, "private": private, "threads": threads,
        "trims_per_node_s": trims_per_node_s, "fds": fds, "peers": peers,
        "cpu_cores": ours_cores, "machine_cores": machine_cores, "window": elapsed,
        "load": open("/proc/loadavg").read().split()[:3],
    }


def smaps_rollup(text):
    """The kB figures of a /proc/PID/smaps_rollup, by name ("Rss", "Pss", "Private_Dirty", ...)."""
    figures = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB":
            figures[parts[0][:-1]] = int(parts[1])
    return figures


def report_idle(label, figures, n):
    rss = figures["rss"]
    print(f"\n[{label}] idle, {len(rss)} nodes, CPU over {figures['window']:.0f} s:")
    print(f"  RSS per node: {summary(rss, ' MiB', digits=1)}; total {sum(rss) / 1024:.2f} GiB "
          f"(target <= {TARGET_RSS_MIB:.0f} MiB per node: "
          f"{'met' if statistics.median(rss) <= TARGET_RSS_MIB else 'NOT met'} at the median, "
          f"{'met' if max(rss) <= TARGET_RSS_MIB else 'NOT met'} at the max)")
    print(f"  PSS per node (shared pages, the binary's among them, split between the processes "
          f"mapping them): {summary(figures['pss'], ' MiB', digits=1)}; total "
          f"{sum(figures['pss']) / 1024:.2f} GiB; private memory per node (what one more node "
          f"adds): {summary(figures['private'], ' MiB', digits=1)}")
    print(f"  threads per node: {summary(figures['threads'], digits=0)}; descriptors per node: "
          f"{summary(figures['fds'], digits=0)}")
    print(f"  connected peers per node (20 sampled): {summary(figures['peers'], digits=0)}; "
          f"peers disconnected by the connection manager: {figures['trims_per_node_s']:.2f} "
          "per node per second (connections opened and trimmed)")
    print(f"  CPU of the {len(rss)} nodes: {figures['cpu_cores'] * 100:.1f}% of one core in all "
          f"({figures['cpu_cores'] * 100 / len(rss):.3f}% per node); the whole machine "
          f"{figures['machine_cores'] * 100:.0f}% of one core (others: "
          f"{max(0.0, figures['machine_cores'] - figures['cpu_cores']) * 100:.0f}%); load "
          f"average {' '.join(figures['load'])}")


def takedown(swarm, catalog, sequence, timeout):
    """Publishes `catalog` on node 0 and measures when each online node accepted it."""
    online = [n for n in swarm.nodes if n.online()]
    published = time.time()
    swarm.client(swarm.nodes[0], "catalog", "publish", catalog)
    late = swarm.wait_sequence(online, sequence, timeout)
    latencies, via = [], {}
    for n in online:
        for at, seq, how in n.accepted():
            if seq == sequence:
                latencies.append(max(0.0, at - published))
                via[how] = via.get(how, 0) + 1
                break
    return latencies, via, late, online


def report_takedown(latencies, via, late, online):
    got = len(latencies)
    print(f"\ntakedown: {got} of {len(online)} online nodes accepted the revoking catalog"
          + (f"; {len(late)} did not within the wait ({', '.join(n.name for n in late[:10])})"
             if late else ""))
    if latencies:
        print(f"  publish -> refused: {summary(latencies, ' s', digits=3)}")
        within = sum(1 for x in latencies if x <= TARGET_ALL_S) / len(online)
        print(f"  within {TARGET_ALL_S:.0f} s: {within * 100:.1f}% of online nodes (target 100%: "
              f"{'met' if within == 1.0 else 'NOT met'}); median target < {TARGET_MEDIAN_S:.0f} s: "
              f"{'met' if statistics.median(latencies) < TARGET_MEDIAN_S else 'NOT met'}")
        print("  how it arrived: " + ", ".join(
            f"{how} {count} ({count / got * 100:.1f}%)" for how, count in sorted(via.items())))


def check_refused(swarm, online, publisher, sequence, links):
    """Every online node's /metrics shows the sequence and the revoked manifest; one node's
    `get` of the withdrawn release is refused as revoked."""
    wrong = []
    for n in online:
        m = n.metrics()
        if (m.get(f'licet_catalog_sequence{{publisher="{publisher}"}}', 0) < sequence
                or m.get(f'licet_catalog_revoked_manifests{{publisher="{publisher}"}}', 0) < 1):
            wrong.append(n.name)
    # The seed holds the withdrawn release: `ls` shows it refused, and why.
    listing = json.loads(swarm.client(swarm.nodes[0], "ls").stdout)
    items = listing["content"]
    item = next((i for i in items if i["manifest_id"] == links["takedown"][2]), None)
    reason = ((item or {}).get("refused") or {}).get("reason")
    refused = reason == "Revoked"
    print(f"  /metrics of all {len(online)} online nodes: sequence >= {sequence} and 1 revoked "
          f"manifest on {len(online) - len(wrong)}" + (f"; not on {wrong[:10]}" if wrong else ""))
    print(f"  the seed's `ls`: the withdrawn release is refused, reason {reason}"
          + ("" if refused else " (NOT Revoked)"))
    return not wrong and refused


def lookups(swarm, nodes, link, tag):
    """`get` of the lookup release on each node; per get, the provider lookups' mean time and
    peers contacted, from the node's /metrics."""
    times, contacted, failures = [], [], []
    for n in nodes:
        before = n.metrics()
        out = swarm.client(n, "get", link, "-o", os.path.join(swarm.work, f"out-{tag}-{n.name}"),
                           check=False)
        if out.returncode != 0:
            failures.append(f"{n.name}: {out.stderr.strip()[:200]}")
            continue
        after = n.metrics()

        def delta(name):
            return after.get(name, 0.0) - before.get(name, 0.0)

        made = delta("licet_provider_lookup_seconds_count")
        if made:
            times.append(delta("licet_provider_lookup_seconds_sum") / made)
        ended = delta("licet_provider_lookup_peers_contacted_count")
        if ended:
            contacted.append(delta("licet_provider_lookup_peers_contacted_sum") / ended)
    return times, contacted, failures


def report_lookups(label, times, contacted, failures, count, n):
    bound = math.ceil(math.log2(n))
    print(f"\n[{label}] lookups: {count - len(failures)} of {count} `get`s of a 256 KiB release "
          "completed" + (f"; failed: {failures[:3]}" if failures else ""))
    if times:
        print(f"  provider lookup: {summary(times, ' ms', scale=1000, digits=1)}")
    if contacted:
        # A lookup ends once the K closest peers answered, and each of its steps toward the
        # key sends at most alpha requests: at most ceil(log2 N) steps means at most
        # K + alpha * ceil(log2 N) requests.
        most = KAD_K + KAD_ALPHA * bound
        print(f"  peers contacted per lookup: {summary(contacted, digits=1)}; ceil(log2 {n}) = "
              f"{bound} steps allow at most K + alpha * {bound} = {most} (target: "
              f"{'met' if max(contacted) <= most else 'NOT met'}; the K = {KAD_K} closest are "
              f"always asked)")
    elif times:
        print("  (this build does not expose licet_provider_lookup_peers_contacted)")


def churn(swarm, catalogs, links, publisher, share, timeout):
    victims = random.sample(swarm.nodes[1:], max(1, round(share * (len(swarm.nodes) - 1))))
    held = {}
    for n in victims:
        m = n.metrics()
        held[n.name] = m.get(f'licet_catalog_sequence{{publisher="{publisher}"}}', 0)
    for n in victims:
        swarm.kill(n)
    print(f"\nchurn: killed {len(victims)} nodes (SIGKILL); publishing catalog 3 while they are "
          "down", flush=True)
    latencies, via, late, online = takedown(swarm, catalogs[2], 3, timeout)
    print(f"  catalog 3 reached {len(latencies)} of {len(online)} online nodes: "
          + (summary(latencies, ' s', digits=3) if latencies else "none"))
    up = [n for n in swarm.nodes if n.online()]
    restarted_at = {}
    for n in victims:
        restarted_at[n.name] = time.time()
        swarm.spawn(n, [m.listen for m in random.sample(up, 2)])
    swarm.wait_up(victims)
    rolled_back = []
    for n in victims:
        m = n.metrics()
        now_held = m.get(f'licet_catalog_sequence{{publisher="{publisher}"}}', 0)
        if now_held < held[n.name]:
            rolled_back.append(f"{n.name}: {held[n.name]:.0f} -> {now_held:.0f}")
    late = swarm.wait_sequence(victims, 3, timeout)
    catch_up, via = [], {}
    for n in victims:
        for at, seq, how in n.accepted():
            if seq == 3:
                catch_up.append(max(0.0, at - restarted_at[n.name]))
                via[how] = via.get(how, 0) + 1
                break
    replay = swarm.client(victims[0], "catalog", "publish", catalogs[0], check=False)
    final = [n.metrics().get(f'licet_catalog_sequence{{publisher="{publisher}"}}', 0)
             for n in victims]
    print(f"  restarted {len(victims)}: {len(catch_up)} caught up with catalog 3"
          + (f" ({summary(catch_up, ' s after restart', digits=2)}; " + ", ".join(
              f"{how} {count}" for how, count in sorted(via.items())) + ")" if catch_up else "")
          + (f"; NOT caught up: {[n.name for n in late][:10]}" if late else ""))
    print(f"  rollback: none below the sequence held before the kill"
          if not rolled_back else f"  ROLLED BACK: {rolled_back[:10]}")
    print(f"  catalog 1 handed to {victims[0].name} after restart: exit {replay.returncode} "
          f"({'refused' if replay.returncode != 0 else 'ACCEPTED'}: "
          f"{replay.stderr.strip()[:160]}); sequences now: min {min(final):.0f}")
    return victims, not late and not rolled_back and replay.returncode != 0


def run(args, node_bin, manifest_bin, work):
    n = args.nodes
    limits = raise_open_file_limit(max(4096, 2 * n + 1024))
    print(f"{n} nodes, waves of {args.wave}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; per node: worker threads "
          f"{args.worker_threads}, blocking threads <= {args.blocking_threads}, open files "
          f"{limits[0]}; extra flags {args.node_flag or 'none'}, environment "
          f"{args.node_env or 'as is'}; load average "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}", flush=True)
    publisher, links, catalogs = prepare_releases(manifest_bin, work)
    print(f"catalog 2: {os.path.getsize(catalogs[1])} bytes, its head "
          f"{os.path.getsize(catalogs[1] + '.head')} bytes", flush=True)
    swarm = Swarm(args, node_bin, manifest_bin, work, publisher)
    try:
        began = time.monotonic()
        swarm.start_all()
        seed = swarm.nodes[0]
        for name in ("takedown", "lookup"):
            swarm.client(seed, "add", links[name][0], "--content", links[name][1])
        swarm.client(seed, "catalog", "publish", catalogs[0])
        print(f"all {n} up in {time.monotonic() - began:.0f} s; waiting for catalog 1 on every "
              f"node, then {args.settle} s to settle ...", flush=True)
        late = swarm.wait_sequence(swarm.nodes, 1, args.timeout + 60)
        if late:
            print(f"  warning: {len(late)} nodes without catalog 1: "
                  f"{[x.name for x in late[:10]]}")
        time.sleep(args.settle)
        report_idle("before the takedown", idle_figures(swarm, args.idle_window), n)

        latencies, via, late, online = takedown(swarm, catalogs[1], 2, args.timeout)
        report_takedown(latencies, via, late, online)
        refused_everywhere = check_refused(swarm, online, publisher, 2, links)

        sample = random.sample(swarm.nodes[1:], min(args.lookups, n - 1))
        times, contacted, failures = lookups(swarm, sample, links["lookup"][3], "a")
        report_lookups("warm DHT", times, contacted, failures, len(sample), n)

        if args.churn > 0 and n > 2:
            victims, churn_ok = churn(swarm, catalogs, links, publisher, args.churn,
                                      args.timeout)
            fresh = [v for v in victims if v not in sample]
            sample = random.sample(fresh, min(args.lookups // 2 or 1, len(fresh)))
            times, contacted, failures = lookups(swarm, sample, links["lookup"][3], "b")
            report_lookups("after churn, from restarted nodes", times, contacted, failures,
                           len(sample), n)
            print(f"  churn: {'every check passed' if churn_ok and not failures else 'FAILED'}")
        report_idle("at the end", idle_figures(swarm, min(10, args.idle_window)), n)
        print(f"\nwhole run {time.monotonic() - began:.0f} s; "
              f"{'all nodes refused the withdrawn release' if refused_everywhere else 'NOT all refused'}")
    finally:
        swarm.stop_all()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--wave", type=int, default=25, help="nodes started at once")
    parser.add_argument("--wave-pause", type=float, default=1.0,
                        help="seconds between waves, once a wave's APIs answer")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds after every node holds catalog 1, before measuring")
    parser.add_argument("--idle-window", type=float, default=30.0,
                        help="seconds over which idle CPU is measured")
    parser.add_argument("--timeout", type=float, default=90.0,
                        help="longest wait for a catalog to reach every node (a poll is 60 s)")
    parser.add_argument("--lookups", type=int, default=20, help="nodes that fetch a release")
    parser.add_argument("--churn", type=float, default=0.2, help="share of nodes killed")
    parser.add_argument("--worker-threads", type=int, default=1)
    parser.add_argument("--blocking-threads", type=int, default=8)
    parser.add_argument("--node-flag", action="append", default=[],
                        help="a flag for every node's `run` (repeat; e.g. --node-flag=--x=1)")
    parser.add_argument("--node-env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for every node (repeat)")
    parser.add_argument("--bin-dir", default=None,
                        help="a folder with licet-node and licet-manifest (default: build them)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (node choices)")
    parser.add_argument("--workdir", default=None, help="kept afterwards (default: a temp dir)")
    parser.add_argument("--self-test", action="store_true", help="unit tests only, no nodes")
    args = parser.parse_args()
    if args.self_test:
        self_test()
        return
    if args.nodes < 2:
        sys.exit("--nodes: at least 2")
    if args.nodes > 254 * NODES_PER_SUBNET:
        sys.exit(f"--nodes: at most {254 * NODES_PER_SUBNET} loopback addresses")
    random.seed(args.seed)
    if args.bin_dir:
        node_bin = os.path.join(args.bin_dir, "licet-node")
        manifest_bin = os.path.join(args.bin_dir, "licet-manifest")
    else:
        node_bin, manifest_bin = build()
    help_text = subprocess.run([node_bin, "run", "--help"], capture_output=True,
                               text=True).stdout
    if "--worker-threads" not in help_text:
        sys.exit(f"{node_bin} has no --worker-threads (an older build?)")
    work = args.workdir or tempfile.mkdtemp(prefix="licet-scale-")
    os.makedirs(work, exist_ok=True)
    try:
        run(args, node_bin, manifest_bin, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
