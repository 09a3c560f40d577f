//! Latency samples and their percentiles.

use serde_json::{Value, json};
use std::time::Duration;

/// Latencies of one measurement, in microseconds.
#[derive(Default, Clone)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Latencies(Vec::with_capacity(n))
    }

    pub fn record(&mut self, d: Duration) {
        self.0
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The p50, p99 and max, in milliseconds (zeros when empty).
    pub fn summary(mut self) -> Summary {
        self.0.sort_unstable();
        let at = |q: f64| -> f64 {
            if self.0.is_empty() {
                return 0.0;
            }
            let i = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len()) - 1;
            f64::from(self.0[i]) / 1000.0
        };
        Summary {
            count: self.0.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Percentiles of a latency distribution.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn to_json(self) -> Value {
        json!({"count": self.count, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms})
    }
}

/// A throughput figure and the latency of its operations.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    pub ops: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub latency: Summary,
    pub errors: usize,
}

impl Rate {
    pub fn new(ops: usize, elapsed: Duration, latencies: Latencies, errors: usize) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Rate {
            ops,
            seconds,
            per_second: ops as f64 / seconds,
            latency: latencies.summary(),
            errors,
        }
    }

    pub fn to_json(self) -> Value {
        json!({
            "ops": self.ops,
            "seconds": self.seconds,
            "per_second": self.per_second,
            "errors": self.errors,
            "latency": self.latency.to_json(),
        })
    }
}

/// A tiny xorshift generator: the load only needs to be varied, not unpredictable.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The whole machine's CPU use over a phase, from `/proc/stat`: every core and every process
/// (the service, PostgreSQL, NATS and the load generator alike). With the rate it gives the
/// CPU time one operation costs the machine, which is what bounds a 2-core box.
pub struct CpuMeter {
    start: Option<(u64, u64)>,
    /// Per process too (only where the processes live through the phase: the service's).
    by_process: Option<ProcessTicks>,
}

/// CPU ticks (user + system) of the processes that share the machine in a run, by who they
/// are: PostgreSQL's, NATS's, and this one (the service and the load generator).
#[derive(Clone, Copy, Debug, Default)]
struct ProcessTicks {
    postgres: u64,
    nats: u64,
    this: u64,
}

impl ProcessTicks {
    /// Sums `/proc/<pid>/stat` over the running processes (a process that ends within a
    /// phase takes its ticks with it: PostgreSQL's pooled backends and NATS live on).
    fn read() -> Self {
        let mut ticks = ProcessTicks::default();
        let me = std::process::id().to_string();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return ticks;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`: utime and stime are the 12th and 13th fields
            // after the closing parenthesis of comm.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let used = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            let (Some(utime), Some(stime)) = (used(11), used(12)) else {
                continue;
            };
            let slot = match comm {
                _ if pid == me => &mut ticks.this,
                "postgres" => &mut ticks.postgres,
                "nats-server" => &mut ticks.nats,
                _ => continue,
            };
            *slot += utime + stime;
        }
        ticks
    }
}

impl CpuMeter {
    pub fn start() -> Self {
        CpuMeter {
            start: cpu_ticks(),
            by_process: None,
        }
    }

    /// [`CpuMeter::start`], and the CPU of PostgreSQL, NATS and this process apart (a raw
    /// phase's connections end before it is read, and their backends' ticks with them).
    pub fn start_by_process() -> Self {
        CpuMeter {
            start: cpu_ticks(),
            by_process: Some(ProcessTicks::read()),
        }
    }

    /// Reads the meter once: adds `cpu_busy` and `cpu_us_per_op` (and, when started by
    /// process, `cpu_us_per_op_by_process`) to a phase's JSON, and gives a short text for the
    /// progress and the microseconds per operation; nothing where `/proc/stat` cannot be read.
    pub fn record(&self, per_second: f64, json: &mut Value) -> (String, Option<f64>) {
        let Some(((busy0, total0), (busy1, total1))) = self.start.zip(cpu_ticks()) else {
            return (String::new(), None);
        };
        let Some(total) = total1.checked_sub(total0).filter(|t| *t > 0) else {
            return (String::new(), None);
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        // The CPU microseconds per operation of `ticks` spent over the phase.
        let us = |ticks: u64| ticks as f64 / total as f64 * cores * 1e6 / per_second.max(1e-9);
        let busy_ticks = busy1.saturating_sub(busy0);
        let (busy, machine) = (busy_ticks as f64 / total as f64, us(busy_ticks));
        json["cpu_busy"] = json!(busy);
        json["cpu_us_per_op"] = json!(machine);
        let mut text = format!(
            ", machine CPU {:.0}% busy, {machine:.0} µs per op",
            busy * 100.0
        );
        if let Some(start) = self.by_process {
            let now = ProcessTicks::read();
            let postgres = us(now.postgres.saturating_sub(start.postgres));
            let nats = us(now.nats.saturating_sub(start.nats));
            let this = us(now.this.saturating_sub(start.this));
            text.push_str(&format!(
                " (PostgreSQL {postgres:.0}, NATS {nats:.0}, this process {this:.0})"
            ));
            json["cpu_us_per_op_by_process"] = json!({
                "postgres": postgres,
                "nats": nats,
                "service_and_load_generator": this,
            });
        }
        (text, Some(machine))
    }
}

/// (busy, total) jiffies of the `cpu` line of `/proc/stat`.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    let total: u64 = v.iter().take(8).sum();
    Some((total - idle, total))
}
