//! The one-connection probe: every request's latency over one keep-alive connection per
//! server, the servers visited in blocks of 200 so the machine's noise falls on all alike.
//!
//! On a small VM the round trip depends mostly on where the client and the server run: on the
//! same CPU a request is a wake-up on that CPU (~15 µs here); across CPUs it waits for an
//! inter-processor wake-up of an idle vCPU (~60 µs). Left to the kernel, the choice follows the
//! order the probe visits the servers, not the servers: the same binary measured twice in one
//! run came out 0.016 and 0.049 ms at p50 depending on its slot. So the probe decides: it pins
//! itself to one CPU and every server (each thread, and child processes such as nginx's
//! workers) to the same CPU or to another, measures each placement, and lets the kernel place
//! everything again afterwards.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// One keep-alive HTTP/1.1 connection with a blocking client: sends `request`, reads the
/// head and a `Content-Length` body, and times each exchange.
struct Probe {
    stream: std::io::BufReader<std::net::TcpStream>,
    request: Vec<u8>,
    body: Vec<u8>,
}

impl Probe {
    fn connect(addr: std::net::SocketAddr, path: &str, header: Option<&str>) -> anyhow::Result<Probe> {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let extra = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
        Ok(Probe {
            stream: std::io::BufReader::with_capacity(128 * 1024, stream),
            request: format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n").into_bytes(),
            body: Vec::new(),
        })
    }

    /// One request; its latency in ms. A status other than 200 is an error.
    fn exchange(&mut self) -> anyhow::Result<f64> {
        use std::io::{BufRead, Read, Write};
        let started = Instant::now();
        self.stream.get_mut().write_all(&self.request)?;
        let (mut status, mut length, mut line) = (0u16, 0usize, String::new());
        loop {
            line.clear();
            if self.stream.read_line(&mut line)? == 0 {
                bail!("connection closed");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(code) = l.strip_prefix("HTTP/1.1 ") {
                status = code.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            } else if let Some((name, value)) = l.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        self.body.resize(length, 0);
        self.stream.read_exact(&mut self.body)?;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        if status != 200 {
            bail!("answered {status}");
        }
        Ok(elapsed)
    }
}

/// What a probe reads and which processes serve it.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: std::net::SocketAddr,
    pub path: String,
    /// An extra header line (the token).
    pub header: Option<String>,
    /// The server's processes; their threads and child processes are pinned with them.
    pub pids: Vec<u32>,
}

/// Where the servers run relative to the probe's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Client and servers on one CPU: each exchange is a wake-up on that CPU.
    SameCpu,
    /// Client on one CPU, servers on another: each exchange crosses CPUs.
    OtherCpu,
}

impl Placement {
    /// The placements this machine can measure (one CPU: only `SameCpu`).
    pub fn available() -> Vec<Placement> {
        if cpus() >= 2 {
            vec![Placement::SameCpu, Placement::OtherCpu]
        } else {
            vec![Placement::SameCpu]
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Placement::SameCpu => "same CPU",
            Placement::OtherCpu => "other CPU",
        }
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sets the CPU affinity of thread `tid` (0: the calling thread) to `cpus` (empty: all).
fn set_affinity(tid: i32, cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it for cpu < 1024.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let all: Vec<usize> = (0..self::cpus()).collect();
        for &cpu in if cpus.is_empty() { &all[..] } else { cpus } {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// `pid`'s threads and those of its descendants (by `PPid` in `/proc`).
fn threads_of(pid: u32) -> Vec<i32> {
    let mut pids = vec![pid];
    let mut i = 0;
    while i < pids.len() {
        let parent = pids[i];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let ppid = std::fs::read_to_string(format!("/proc/{child}/stat")).ok().and_then(|s| {
                // Fields after the parenthesised name: state, ppid, …
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
            });
            if ppid == Some(parent) && !pids.contains(&child) {
                pids.push(child);
            }
        }
        i += 1;
    }
    pids.iter()
        .flat_map(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|t| t.file_name().to_str()?.parse().ok())
        })
        .collect()
}

fn pin_servers(targets: &[Target], cpus: &[usize]) -> std::io::Result<()> {
    for tid in targets.iter().flat_map(|t| &t.pids).flat_map(|&pid| threads_of(pid)) {
        set_affinity(tid, cpus)?;
    }
    Ok(())
}

/// Latency at one connection, several servers in the same stretch of time: blocks of 200
/// requests go to each in turn, so the machine's noise (other processes, the VM's scheduling)
/// falls on all alike, and every request's time is kept: the percentiles are exact over all of
/// them, not a median of per-run figures. One list of latencies (ms) per target, in order.
/// The client and the servers run where `placement` says, and anywhere again afterwards.
pub fn interleaved(targets: &[Target], requests: usize, placement: Placement) -> anyhow::Result<Vec<Vec<f64>>> {
    let server_cpu = match placement {
        Placement::SameCpu => 0,
        Placement::OtherCpu => 1,
    };
    set_affinity(0, &[0]).context("pinning the probe")?;
    pin_servers(targets, &[server_cpu]).context("pinning the servers")?;
    let measured = measure(targets, requests);
    let _ = pin_servers(targets, &[]);
    let _ = set_affinity(0, &[]);
    measured
}

fn measure(targets: &[Target], requests: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    const BLOCK: usize = 200;
    let mut probes = targets
        .iter()
        .map(|t| Probe::connect(t.addr, &t.path, t.header.as_deref()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for probe in &mut probes {
        for _ in 0..BLOCK {
            probe.exchange()?;
        }
    }
    let mut out: Vec<Vec<f64>> = targets.iter().map(|_| Vec::with_capacity(requests)).collect();
    while out[0].len() < requests {
        for (i, probe) in probes.iter_mut().enumerate() {
            for _ in 0..BLOCK {
                out[i].push(
                    probe
                        .exchange()
                        .with_context(|| format!("{} {}", targets[i].addr, targets[i].path))?,
                );
            }
        }
    }
    Ok(out)
}
