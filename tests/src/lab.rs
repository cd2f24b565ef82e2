//! A lab of real networks on one machine: network namespaces joined by veth pairs and bridges,
//! an "internet" segment for public hosts, and homes, each a LAN behind a router namespace that
//! does NAT with nftables; `tc` caps a host's upload and download and may delay its packets
//! (`netem`). Real `licet-node` processes run inside the namespaces
//! ([`crate::TestNet::start_on`]); the benchmarks on the lab share [`crate::lab_bench`].
//!
//! Layout (every address exists only inside the lab's own namespaces):
//! - the internet is a bridge in the namespace `<lab>-inet`, network `172.31.0.0/16`; public
//!   hosts and the homes' routers (`wan`) are on it, from `172.31.0.10` up;
//! - home `k` (from 1) is `192.168.k.0/24` behind its router `<lab>-<home>`: the router's `lan`
//!   bridge is `192.168.k.1`, its hosts are `192.168.k.10` up, their default route is the router.
//!   The router masquerades what leaves by `wan` ([`Nat::Cone`]: Linux keeps the source port and
//!   one mapping per socket, endpoint-independent; [`Nat::Symmetric`]: `fully-random`, a new port
//!   per destination) and drops every connection that starts from outside (a home router's
//!   default), so nothing reaches a home host unless the host opened the way.
//!
//! Invariants:
//! - every namespace, and with it every veth, bridge, nftables table and qdisc, is deleted when
//!   the [`Lab`] is dropped, also when the test panics; a lab left behind by a killed test process
//!   is deleted by the next [`Lab::new`] (its namespaces' names carry the process id);
//! - names are unique per process and lab (`lt<pid>x<n>-<name>`), so tests in parallel, in one
//!   process or several, never share a namespace;
//! - a lab needs root and `ip`/`nft`/`tc`; [`Lab::new`] says which is missing (callers then use
//!   [`crate::required::cannot_run_here`]).

use std::{
    cell::{Cell, RefCell},
    net::Ipv4Addr,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// The lab's internet, to give nodes as `--public-range` (it is a private range: no other may
/// be used, even inside the lab's namespaces).
pub const INTERNET: &str = "172.31.0.0/16";

/// Labs made by this process so far (for unique names).
static LABS: AtomicU32 = AtomicU32::new(0);

/// The internet's first address for hosts and routers.
const FIRST_PUBLIC_HOST: u32 = 10;

/// How a home router translates its hosts' connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Port-preserving masquerade: a host's socket keeps one public port whoever it talks to,
    /// so hole punching can work (endpoint-independent mapping, address- and port-dependent
    /// filtering, as most home routers).
    Cone,
    /// `masquerade fully-random`: every destination sees another public port, so a peer cannot
    /// predict it and hole punching fails (as carrier-grade and some enterprise NATs).
    Symmetric,
}

/// A rate cap on one host's link, in kilobits per second (`tc tbf`), each way (1 kbit/s is 1,000
/// bits a second, as `tc` counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// What the host may send.
    pub up_kbit: u32,
    /// What the host may receive.
    pub down_kbit: u32,
}

/// One machine in the lab: a namespace with one interface (`eth0`) and one address.
#[derive(Debug, Clone)]
pub struct Host {
    name: String,
    namespace: String,
    ip: Ipv4Addr,
    /// Where the other end of `eth0` is (namespace, interface): a bridge port on the internet or
    /// in a home's router.
    uplink: (String, String),
}

impl Host {
    /// Its name in the lab.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its network namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// A command that runs `program` inside the host (`ip netns exec <namespace> program`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }

    /// Runs `f` on a thread that has entered the host's network namespace, so sockets `f` opens
    /// are the host's (e.g. to reach a node's control API on the host's 127.0.0.1).
    pub fn run_inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = netns_path(&self.namespace);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let file = std::fs::File::open(&path)
                        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
                    rustix::thread::move_into_link_name_space(
                        std::os::fd::AsFd::as_fd(&file),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .unwrap_or_else(|e| panic!("cannot enter {}: {e}", path.display()));
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// A home: a LAN behind a NAT router.
#[derive(Debug)]
pub struct Home {
    name: String,
    router: String,
    index: u8,
    public_ip: Ipv4Addr,
    nat: Nat,
    hosts: Cell<u8>,
}

impl Home {
    /// Its name in the lab.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The router's address on the internet, which every host of the home shares.
    pub fn public_ip(&self) -> Ipv4Addr {
        self.public_ip
    }

    /// How its router translates.
    pub fn nat(&self) -> Nat {
        self.nat
    }
}

/// A set of network namespaces for one test; everything is deleted when it is dropped.
pub struct Lab {
    prefix: String,
    internet: String,
    namespaces: RefCell<Vec<String>>,
    public_hosts: Cell<u32>,
    homes: Cell<u8>,
}

impl Lab {
    /// Builds the internet segment, or says why a lab cannot be built here (not root, a tool
    /// missing, namespaces not allowed).
    pub fn new() -> Result<Lab, String> {
        for (tool, args) in [
            ("ip", &["-V"][..]),
            ("nft", &["--version"][..]),
            ("tc", &["-V"][..]),
        ] {
            if !crate::required::command_runs(tool, args) {
                return Err(format!(
                    "`{tool}` is not installed (Debian: iproute2, nftables)"
                ));
            }
        }
        remove_labs_of_dead_processes();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("lt{}x{n}", std::process::id());
        let lab = Lab {
            internet: format!("{prefix}-inet"),
            prefix,
            namespaces: RefCell::new(Vec::new()),
            public_hosts: Cell::new(0),
            homes: Cell::new(0),
        };
        lab.add_namespace(&lab.internet)?;
        ip(&lab.internet, &["link", "add", "br0", "type", "bridge"]);
        ip(&lab.internet, &["link", "set", "br0", "up"]);
        Ok(lab)
    }

    /// A lab for a test, or `None` when none can be built here: the test then returns, having
    /// said why (and under CI it fails instead, see [`crate::required`]).
    #[track_caller]
    pub fn for_test() -> Option<Lab> {
        match Lab::new() {
            Ok(lab) => Some(lab),
            Err(why) => {
                crate::required::cannot_run_here(&why);
                None
            }
        }
    }

    /// A host on the internet (a public address).
    pub fn public_host(&self, name: &str) -> Host {
        let address = self.next_public_ip();
        let namespace = self.namespace_for(name);
        let port = format!("h{}", self.public_hosts.get());
        veth(&namespace, "eth0", &self.internet, &port);
        ip(
            &self.internet,
            &["link", "set", &port, "master", "br0", "up"],
        );
        configure(&namespace, "eth0", address, 16);
        Host {
            name: name.to_owned(),
            namespace,
            ip: address,
            uplink: (self.internet.clone(), port),
        }
    }

    /// A home behind a router doing `nat`.
    pub fn home(&self, name: &str, nat: Nat) -> Home {
        let index = self.homes.get() + 1;
        assert!(index < 250, "a lab has at most 249 homes");
        self.homes.set(index);
        let router = self.namespace_for(name);
        let public_ip = self.next_public_ip();
        let port = format!("r{index}");
        veth(&router, "wan", &self.internet, &port);
        ip(
            &self.internet,
            &["link", "set", &port, "master", "br0", "up"],
        );
        configure(&router, "wan", public_ip, 16);
        ip(&router, &["link", "add", "lan", "type", "bridge"]);
        ip(
            &router,
            &[
                "addr",
                "add",
                &format!("192.168.{index}.1/24"),
                "dev",
                "lan",
            ],
        );
        ip(&router, &["link", "set", "lan", "up"]);
        run_in(&router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"], None);
        let masquerade = match nat {
            Nat::Cone => "masquerade",
            Nat::Symmetric => "masquerade fully-random",
        };
        let rules = format!(
            "table ip nat {{\n\
             \tchain postrouting {{ type nat hook postrouting priority srcnat; oifname \"wan\" {masquerade}; }}\n\
             }}\n\
             table inet filter {{\n\
             \tchain input {{ type filter hook input priority filter; iifname \"wan\" ct state new drop; }}\n\
             \tchain forward {{ type filter hook forward priority filter; iifname \"wan\" ct state new drop; }}\n\
             }}\n"
        );
        run_in(&router, "nft", &["-f", "-"], Some(&rules));
        Home {
            name: name.to_owned(),
            router,
            index,
            public_ip,
            nat,
            hosts: Cell::new(0),
        }
    }

    /// A host on `home`'s LAN.
    pub fn home_host(&self, home: &Home, name: &str) -> Host {
        let n = home.hosts.get() + 1;
        assert!(n < 240, "a home has at most 239 hosts");
        home.hosts.set(n);
        let namespace = self.namespace_for(name);
        let port = format!("l{n}");
        veth(&namespace, "eth0", &home.router, &port);
        ip(&home.router, &["link", "set", &port, "master", "lan", "up"]);
        let host_ip = Ipv4Addr::new(192, 168, home.index, 9 + n);
        configure(&namespace, "eth0", host_ip, 24);
        ip(
            &namespace,
            &[
                "route",
                "add",
                "default",
                "via",
                &format!("192.168.{}.1", home.index),
            ],
        );
        Host {
            name: name.to_owned(),
            namespace,
            ip: host_ip,
            uplink: (home.router.clone(), port),
        }
    }

    /// Caps `host`'s link (token bucket filters on both ends of its `eth0`).
    pub fn cap(&self, host: &Host, caps: Caps) {
        shape(&host.namespace, "eth0", caps.up_kbit, Duration::ZERO);
        shape(
            &host.uplink.0,
            &host.uplink.1,
            caps.down_kbit,
            Duration::ZERO,
        );
    }

    /// Caps `host`'s link as [`Lab::cap`] does, and delays every packet that crosses it by
    /// `one_way` in each direction (`netem` on both ends, the rate cap below it). A packet
    /// between two hosts delayed so crosses both their links: their round trip is 4 × `one_way`
    /// (5 ms gives 20 ms). `Err` saying so, with nothing changed, where the kernel has no
    /// `netem` (`CONFIG_NET_SCH_NETEM`); the caller may then [`Lab::cap`] without delay.
    pub fn cap_delayed(&self, host: &Host, caps: Caps, one_way: Duration) -> Result<(), String> {
        if !one_way.is_zero() && !netem_available(&host.namespace) {
            return Err(
                "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set), so \
                        the lab cannot delay packets here"
                    .to_owned(),
            );
        }
        shape(&host.namespace, "eth0", caps.up_kbit, one_way);
        shape(&host.uplink.0, &host.uplink.1, caps.down_kbit, one_way);
        Ok(())
    }

    fn next_public_ip(&self) -> Ipv4Addr {
        let n = self.public_hosts.get() + 1;
        self.public_hosts.set(n);
        let offset = FIRST_PUBLIC_HOST + n;
        assert!(offset < 65_000, "the lab's internet is full");
        Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 31, 0, 0)) + offset)
    }

    /// Creates the namespace for `name` (with its loopback up).
    fn namespace_for(&self, name: &str) -> String {
        let namespace = format!("{}-{name}", self.prefix);
        self.add_namespace(&namespace)
            .unwrap_or_else(|e| panic!("{e}"));
        namespace
    }

    fn add_namespace(&self, namespace: &str) -> Result<(), String> {
        let out = Command::new("ip")
            .args(["netns", "add", namespace])
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot create network namespace {namespace} (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        self.namespaces.borrow_mut().push(namespace.to_owned());
        ip(namespace, &["link", "set", "lo", "up"]);
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for namespace in self.namespaces.borrow().iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "delete", namespace])
                .output();
        }
    }
}

/// Where `ip netns` keeps the namespace `name`.
fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Deletes the namespaces of labs whose process is gone (killed before its labs were dropped).
fn remove_labs_of_dead_processes() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("lt")
            .and_then(|rest| rest.split('x').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        }
    }
}

/// `ip -n namespace args…`, which must succeed.
fn ip(namespace: &str, args: &[&str]) {
    let mut all = vec!["-n", namespace];
    all.extend_from_slice(args);
    checked(Command::new("ip").args(&all), None);
}

/// Runs `program args…` inside `namespace` (with `stdin` fed), which must succeed.
fn run_in(namespace: &str, program: &str, args: &[&str], stdin: Option<&str>) {
    checked(
        Command::new("ip")
            .args(["netns", "exec", namespace, program])
            .args(args),
        stdin,
    );
}

/// A veth pair: `a_name` in namespace `a`, `b_name` in namespace `b`.
fn veth(a: &str, a_name: &str, b: &str, b_name: &str) {
    checked(
        Command::new("ip").args([
            "link", "add", a_name, "netns", a, "type", "veth", "peer", "name", b_name, "netns", b,
        ]),
        None,
    );
}

/// Gives `interface` in `namespace` the address `ip/prefix` and brings it up.
fn configure(namespace: &str, interface: &str, address: Ipv4Addr, prefix: u8) {
    ip(
        namespace,
        &[
            "addr",
            "add",
            &format!("{address}/{prefix}"),
            "dev",
            interface,
        ],
    );
    ip(namespace, &["link", "set", interface, "up"]);
}

/// A token bucket filter of `kbit` kbit/s on `interface`'s egress in `namespace`, under a
/// `netem` delay of `delay` when it is not zero (netem's recipe for delay with a rate).
fn shape(namespace: &str, interface: &str, kbit: u32, delay: Duration) {
    // A burst of at least 10 ms at the rate (and a full frame), and a queue of 100 ms.
    let burst_bytes = (kbit as u64 * 1000 / 8 / 100).max(16 * 1024);
    let parent: &[&str] = if delay.is_zero() {
        &["root"]
    } else {
        let micros = format!("{}us", delay.as_micros());
        // Room for a second of packets at the rate in flight through the delay.
        let limit = (u64::from(kbit) * 1000 / 8 / 1500).max(1000).to_string();
        ip_tc(
            namespace,
            &[
                "qdisc", "replace", "dev", interface, "root", "handle", "1:", "netem", "delay",
                &micros, "limit", &limit,
            ],
        );
        &["parent", "1:1", "handle", "10:"]
    };
    let rate = format!("{kbit}kbit");
    let burst = burst_bytes.to_string();
    let mut args = vec!["qdisc", "replace", "dev", interface];
    args.extend_from_slice(parent);
    args.extend_from_slice(&["tbf", "rate", &rate, "burst", &burst, "latency", "100ms"]);
    ip_tc(namespace, &args);
}

/// Whether the kernel has `netem`: tries it on the loopback of `namespace` (and removes it).
fn netem_available(namespace: &str) -> bool {
    let tried = Command::new("tc")
        .args([
            "-n", namespace, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ])
        .output()
        .is_ok_and(|out| out.status.success());
    if tried {
        ip_tc(namespace, &["qdisc", "del", "dev", "lo", "root"]);
    }
    tried
}

/// `tc -n namespace args…`, which must succeed.
fn ip_tc(namespace: &str, args: &[&str]) {
    let mut all = vec!["-n", namespace];
    all.extend_from_slice(args);
    checked(Command::new("tc").args(&all), None);
}

/// Runs `command` (feeding `stdin`), panicking with its output if it fails.
fn checked(command: &mut Command, stdin: Option<&str>) {
    use std::io::Write as _;
    command
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
