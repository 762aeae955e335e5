//! Where results come from: the pcsim version and git commit (embedded at
//! build time by `build.rs`), the command line as typed, and the machine
//! (CPU model, cores, memory), for the headers of suites and reports.

use serde::{Deserialize, Serialize};

/// The git commit pcsim was built from (`-modified` when the built sources
/// differ from it), or `unknown`.
pub const GIT_HASH: &str = env!("PCSIM_GIT_HASH");

/// `0.1.0 (git 71e05d4c1a2b)`.
pub fn version() -> String {
    format!("{} (git {GIT_HASH})", env!("CARGO_PKG_VERSION"))
}

/// The command line of this process, shell-quoted, with the executable
/// shown as `pcsim` (wherever it was run from).
pub fn command_line() -> String {
    std::iter::once("pcsim".to_string())
        .chain(std::env::args().skip(1).map(|a| shell_quote(&a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `a` as a POSIX shell word: unchanged when it is safe, else single-quoted.
pub fn shell_quote(a: &str) -> String {
    let safe = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// The machine results were measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name (`/proc/cpuinfo`), or `unknown`.
    pub cpu: String,
    /// Family and model numbers and the widest vector extension, since
    /// virtual machines often report a bare model name (`AMD EPYC`).
    pub cpu_details: Option<String>,
    /// Logical CPUs of the machine.
    pub logical_cpus: Option<usize>,
    /// CPUs this process may use (affinity, cgroup quota).
    pub available_cpus: usize,
    /// Total memory in bytes (`/proc/meminfo`).
    pub memory_bytes: Option<u64>,
    /// `linux x86_64`.
    pub os: String,
}

impl Machine {
    /// Describes this machine (Linux `/proc`; elsewhere what Rust knows).
    pub fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |line: &str, name: &str| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        };
        let cpu = cpuinfo
            .lines()
            .find_map(|l| field(l, "model name"))
            .unwrap_or_else(|| "unknown".into());
        let first = |name: &str| cpuinfo.lines().find_map(|l| field(l, name));
        let simd = first("flags").and_then(|flags| {
            let has = |f: &str| flags.split_whitespace().any(|x| x == f);
            [
                ("avx512f", "AVX-512"),
                ("avx2", "AVX2"),
                ("sse4_2", "SSE4.2"),
            ]
            .into_iter()
            .find(|(f, _)| has(f))
            .map(|(_, name)| name.to_string())
        });
        let numbers = match (first("cpu family"), first("model")) {
            (Some(f), Some(m)) => Some(format!("family {f}, model {m}")),
            _ => None,
        };
        let cpu_details = match (numbers, simd) {
            (Some(n), Some(s)) => Some(format!("{n}; {s}")),
            (a, b) => a.or(b),
        };
        let logical = cpuinfo
            .lines()
            .filter(|l| field(l, "processor").is_some())
            .count();
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find_map(|l| {
                    let kb = field(l, "MemTotal")?;
                    kb.trim_end_matches("kB").trim().parse::<u64>().ok()
                })
            })
            .map(|kb| kb * 1024);
        Self {
            cpu,
            cpu_details,
            logical_cpus: (logical > 0).then_some(logical),
            available_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }

    /// `AMD EPYC (family 25, model 17; AVX-512), 2 CPUs, 23.5 GiB memory,
    /// linux x86_64`.
    pub fn describe(&self) -> String {
        let cpus = match self.logical_cpus {
            Some(n) if n != self.available_cpus => {
                format!("{n} CPUs ({} available)", self.available_cpus)
            }
            Some(n) => format!("{n} CPUs"),
            None => format!("{} CPUs available", self.available_cpus),
        };
        let memory = self.memory_bytes.map_or("memory unknown".into(), |b| {
            format!("{:.1} GiB memory", b as f64 / (1u64 << 30) as f64)
        });
        let cpu = match &self.cpu_details {
            Some(d) => format!("{} ({d})", self.cpu),
            None => self.cpu.clone(),
        };
        format!("{cpu}, {cpus}, {memory}, {}", self.os)
    }
}

/// The current UTC time, `2025-01-31T12:00:00Z`.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_round_trip_through_sh() {
        assert_eq!(shell_quote("runs/rq-quick"), "runs/rq-quick");
        assert_eq!(shell_quote("data.path=/x/mnist"), "data.path=/x/mnist");
        let words = [
            "a b",
            "it's",
            "",
            "runtime.trigger=\"clock\"",
            "$HOME",
            "x;y",
            "tab\there",
        ];
        let script = format!("printf '%s\\n' {}", words.map(shell_quote).join(" "));
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("sh runs");
        let text = String::from_utf8(out.stdout).unwrap();
        let got: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(got, words, "{script}");
    }

    #[test]
    fn the_machine_is_described() {
        let m = Machine::this();
        assert!(m.available_cpus >= 1);
        let text = m.describe();
        assert!(text.contains("CPUs"), "{text}");
        assert!(!GIT_HASH.is_empty());
        assert!(version().starts_with(env!("CARGO_PKG_VERSION")));
    }
}
