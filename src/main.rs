//! The `recovery-info` binary: hands the command line to the library (`recovery_info::cli`).

use std::process::ExitCode;

/// mimalloc instead of the system allocator: the service allocates per request, per event and
/// per row, and glibc's malloc took a tenth of the process's time in the profiles
/// (docs/benchmarks.md). Built without the `mimalloc` feature, the binary keeps the system
/// allocator, which heap profilers can follow.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    recovery_info::cli::run(std::env::args_os()).await
}
