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
