//! SIGINT and SIGTERM: the first asks the running scenario (or sweep) to
//! stop at the next training step and write what it has, with status
//! `interrupted`; a second one ends the process at once (exit 128 + signal).
//! Without `install` (a library user) nothing changes until `request`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use signal_hook::consts::signal::{SIGINT, SIGTERM};

/// The first stopping signal received (0: none).
static STOP: AtomicUsize = AtomicUsize::new(0);
/// Set by the first signal; arms the immediate exit on the next one.
static ARMED: AtomicBool = AtomicBool::new(false);

/// Installs the handlers for SIGINT and SIGTERM.
pub fn install() -> std::io::Result<()> {
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, &ARMED)?;
        signal_hook::flag::register(signal, &ARMED)?;
        record(signal)?;
    }
    Ok(())
}

/// Keeps only the first signal's number (a second one exits anyway).
fn record(signal: i32) -> std::io::Result<()> {
    // SAFETY: the action only performs an atomic compare-exchange, which is
    // async-signal-safe.
    unsafe {
        signal_hook::low_level::register(signal, move || {
            let _ = STOP.compare_exchange(0, signal as usize, Ordering::SeqCst, Ordering::SeqCst);
        })?;
    }
    Ok(())
}

/// The signal that asked to stop, if any.
pub fn requested() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s as i32),
    }
}

/// Asks the running scenarios to stop as if `signal` had arrived.
pub fn request(signal: i32) {
    let _ = STOP.compare_exchange(0, signal as usize, Ordering::SeqCst, Ordering::SeqCst);
}

/// `SIGINT`, `SIGTERM`, or `signal N`.
pub fn name(signal: i32) -> String {
    signal_hook::low_level::signal_name(signal)
        .map_or_else(|| format!("signal {signal}"), str::to_string)
}

/// A run or sweep stopped by a signal; its results so far were written.
#[derive(Debug, thiserror::Error)]
#[error("{what} was interrupted by {} ({progress}); results so far are in {dir}", name(*.signal))]
pub struct Interrupted {
    pub signal: i32,
    pub what: &'static str,
    pub progress: String,
    pub dir: String,
}

impl Interrupted {
    /// The shell's convention: 128 + signal (130 for SIGINT, 143 for SIGTERM).
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}
