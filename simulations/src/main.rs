//! `meshchat-sim`: run a scenario file over real meshchat nodes and write a
//! report (JSON, CSV, SVG plots). See docs/SIMULATIONS.md.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use meshchat_sim::{report, run, RunOptions, Scenario};

#[derive(Parser)]
#[command(
    name = "meshchat-sim",
    about = "Network simulations over real meshchat nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario and writes its report.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Seed (overrides the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Output directory (default: sim-out/<scenario name>-<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the nodes' databases go (default: /dev/shm, else the temp dir).
        #[arg(long)]
        data_root: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// First play the messages over bare gossipsub on the same network
        /// (gossip scenarios), and report the run against that floor.
        #[arg(long)]
        floor: bool,
    },
    /// Plays a gossip scenario's messages over bare gossipsub swarms on the
    /// same simulated network: the floor its `run` reads against.
    Floor {
        /// The scenario file (TOML); its groups must use gossip.
        scenario: PathBuf,
        /// Seed (overrides the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints the schedule a scenario and seed produce (JSON), without running it.
    Plan {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Seed (overrides the scenario's).
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn main() -> std::process::ExitCode {
    match main_inner() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main_inner() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Floor {
            scenario,
            seed,
            json,
        } => {
            let scenario = Scenario::load(&scenario)?;
            let seed = seed.unwrap_or(scenario.seed);
            let runtime = runtime()?;
            let floor = runtime.block_on(meshchat_sim::floor::floor(&scenario, seed))?;
            if json {
                println!("{}", report::to_json(&floor));
            } else {
                print_floor(&floor);
            }
            Ok(())
        }
        Command::Plan { scenario, seed } => {
            let scenario = Scenario::load(&scenario)?;
            let schedule = meshchat_sim::plan(&scenario, seed.unwrap_or(scenario.seed));
            println!("{}", report::to_json(&schedule));
            Ok(())
        }
        Command::Run {
            scenario,
            seed,
            out,
            data_root,
            quiet,
            floor,
        } => {
            let scenario = Scenario::load(&scenario)?;
            let seed = seed.unwrap_or(scenario.seed);
            let out = out.unwrap_or_else(|| {
                PathBuf::from("sim-out").join(format!("{}-{seed}", scenario.name))
            });
            let runtime = runtime()?;
            let options = RunOptions {
                seed: Some(seed),
                data_root,
                progress: !quiet,
            };
            let floor = if floor {
                let floor = runtime.block_on(meshchat_sim::floor::floor(&scenario, seed))?;
                print_floor(&floor);
                Some(floor)
            } else {
                None
            };
            let mut outcome = runtime.block_on(run(&scenario, &options))?;
            outcome.report.floor = floor;
            report::write_all(&out, &outcome)
                .with_context(|| format!("writing the report to {}", out.display()))?;
            print_summary(&outcome.report, &out);
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn print_floor(f: &meshchat_sim::floor::FloorReport) {
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1} ms"));
    println!(
        "floor of {} (seed {}): {} bare gossipsub swarms, {} messages of {} bytes",
        f.scenario,
        f.seed,
        f.peers,
        f.messages,
        meshchat_sim::floor::FRAME_BYTES
    );
    println!(
        "delivery: {}/{} receptions; meshes formed in {:.1} s",
        f.delivered, f.expected_deliveries, f.mesh_secs
    );
    println!(
        "latency: p50 {}  p95 {}  p99 {}  max {}",
        ms(f.latency_ms.p50),
        ms(f.latency_ms.p95),
        ms(f.latency_ms.p99),
        ms(f.latency_ms.max)
    );
    if let (Some(secs), Some(per)) = (f.workload_cpu_secs, f.cpu_ms_per_delivery) {
        println!("cpu: workload {secs:.1} s, {per:.3} ms per reception");
    }
}

fn print_summary(r: &meshchat_sim::Report, out: &std::path::Path) {
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1} ms"));
    println!(
        "scenario {} (seed {}): {} peers, {} relays, {} groups",
        r.scenario,
        r.seed,
        r.peers,
        r.relays,
        r.group_sizes.len()
    );
    println!(
        "delivery: {}/{} receptions ({:.4}){}",
        r.delivered_in_history,
        r.expected_deliveries,
        r.delivery_ratio,
        if r.all_delivered {
            ""
        } else {
            "  NOT all delivered"
        }
    );
    println!(
        "latency: p50 {}  p95 {}  p99 {}  max {}",
        ms(r.latency_ms.p50),
        ms(r.latency_ms.p95),
        ms(r.latency_ms.p99),
        ms(r.latency_ms.max)
    );
    println!(
        "latency, members reachable when written: p50 {}  p95 {}  p99 {}  ({} receptions)",
        ms(r.latency_ms_reachable.p50),
        ms(r.latency_ms_reachable.p95),
        ms(r.latency_ms_reachable.p99),
        r.latency_ms_reachable.count
    );
    for c in &r.convergence {
        match (c.healed_s, c.converged_after_s) {
            (Some(h), Some(t)) => println!(
                "partition {} healed at {h:.1} s: converged {t:.2} s later",
                c.partition
            ),
            (Some(h), None) => println!(
                "partition {} healed at {h:.1} s: NOT converged by the end",
                c.partition
            ),
            (None, _) => println!("partition {} never healed", c.partition),
        }
    }
    println!(
        "bytes per delivered message: {}; relay high-water: {} envelopes; memory per node: {:.1} MiB (+{:.1} MiB store)",
        r.bytes.per_delivered_message.map_or("-".into(), |b| format!("{b:.0}")),
        r.relay_high_water.messages,
        r.memory.per_node_bytes as f64 / 1048576.0,
        r.memory.store_bytes_per_node as f64 / 1048576.0
    );
    if let (Some(setup), Some(workload)) = (r.cpu.setup_secs, r.cpu.workload_secs) {
        println!(
            "cpu: setup {setup:.1} s, workload {workload:.1} s ({} of {} cores busy; {} per reception)",
            r.cpu
                .workload_busy
                .map_or("-".into(), |b| format!("{:.0} %", b * 100.0)),
            r.cpu.cores,
            r.cpu
                .ms_per_delivery
                .map_or("-".into(), |m| format!("{m:.2} ms")),
        );
    }
    let c = &r.changes;
    println!(
        "changes: {} published on topics, {} pushed; received {} by gossip, {} by push, {} by sync, {} from relays",
        c.gossip_published,
        c.pushed,
        c.received_by_gossip,
        c.received_by_push,
        c.received_by_sync,
        c.received_from_relays
    );
    if let Some(delivered) = (r.delivered_in_history > 0).then_some(r.delivered_in_history) {
        println!("bytes per delivered message by protocol ({delivered} receptions):");
        for line in &r.bytes.by_protocol {
            println!(
                "  {:>9.0} B  {:>5.1} %  {}",
                line.per_delivered_message.unwrap_or(0.0),
                line.share * 100.0,
                line.protocol
            );
        }
    }
    if let Some(f) = &r.floor {
        let ratio = |ours: Option<f64>, bare: Option<f64>| match (ours, bare) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}x", a / b),
            _ => "-".into(),
        };
        println!(
            "against bare gossipsub on the same network: latency p50 {} p99 {}, CPU per reception {}",
            ratio(r.latency_ms.p50, f.latency_ms.p50),
            ratio(r.latency_ms.p99, f.latency_ms.p99),
            ratio(r.cpu.ms_per_delivery, f.cpu_ms_per_delivery),
        );
    }
    println!("report: {}", out.display());
}
