//! `bulk-bench`: measures the figures of the performance targets and prints them. Without a
//! subcommand it runs all five, one after the other, and ends with a table of every figure:
//!
//! 1. `validation`: scheme validation throughput of a 1,000,000-user file next to bare
//!    `serde_json` parsing of the same bytes (target ratio >= 0.70);
//! 2. `memory`: peak resident memory of the processor path on a file of >= 250 MB (target
//!    <= 64 MiB);
//! 3. `local`: end-to-end time of a 1,000,000-user job on the local server, upload to
//!    `completed` (target <= 60 s);
//! 4. `dynamodb`: DynamoDB requests per 1000 users upserted, on the AWS adapters against moto
//!    (target <= 48);
//! 5. `lambda`: release zip size of each function (target <= 8 MB) and time from process start
//!    to the first handled invocation under the Lambda runtime emulator (target <= 30 ms).
//!
//! Every figure is measured on the spot; nothing is hard-coded. Files are generated
//! deterministically (user `i` is always the same record).

mod dynamodb;
mod lambda;
mod local;
mod memory;
mod moto;
mod report;
mod synthetic;
mod validation;

use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use report::Figure;

/// The tenant the benchmark works as.
const TENANT: &str = "bench";

#[derive(Parser)]
#[command(
    name = "bulk-bench",
    about = "Measures the performance figures of bulk-users (all five without a subcommand)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    sizes: Sizes,
}

#[derive(Args, Clone, Copy)]
struct Sizes {
    /// Users in the validation file (figure 1).
    #[arg(long, default_value_t = 1_000_000, global = true)]
    validation_users: usize,
    /// Minimum size in MB of the processor-path file (figure 2).
    #[arg(long, default_value_t = 250, global = true)]
    memory_megabytes: u64,
    /// Users in the local end-to-end job (figure 3).
    #[arg(long, default_value_t = 1_000_000, global = true)]
    local_users: usize,
    /// Users upserted on DynamoDB (figure 4).
    #[arg(long, default_value_t = 10_000, global = true)]
    dynamodb_users: usize,
    /// Chunks processed at once by the local worker (figures 2 and 3).
    #[arg(long, default_value_t = 2, global = true)]
    workers: usize,
    /// Measured starts per function (figure 5).
    #[arg(long, default_value_t = 5, global = true)]
    start_rounds: usize,
    /// Measure the Lambda zips and binaries of an earlier build instead of building them
    /// (figure 5).
    #[arg(long, global = true)]
    no_lambda_build: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Figure 1: validation throughput vs serde_json.
    Validation,
    /// Figure 2: peak resident memory of the processor path.
    Memory,
    /// Figure 3: local end-to-end time of a large job.
    Local,
    /// Figure 4: DynamoDB requests per 1000 users upserted.
    Dynamodb,
    /// Figure 5: release zip sizes and start-up to first invocation.
    Lambda,
    /// The child process of figure 2 (not for direct use).
    #[command(hide = true)]
    ProcessFile {
        #[arg(long, value_enum)]
        stage: memory::Stage,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        workers: usize,
    },
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let cli = Cli::parse();
    let sizes = cli.sizes;
    let mut figures = Vec::new();
    let mut failures = 0;
    let selected: Vec<Command> = match cli.command {
        Some(Command::ProcessFile {
            stage,
            data_dir,
            file,
            workers,
        }) => return memory::process_file(stage, data_dir, file, workers).await,
        Some(one) => vec![one],
        None => vec![
            Command::Validation,
            Command::Memory,
            Command::Local,
            Command::Dynamodb,
            Command::Lambda,
        ],
    };
    for command in selected {
        let measured = match command {
            Command::Validation => {
                figure("1. validation", validation::run(sizes.validation_users)).await
            }
            Command::Memory => {
                figure(
                    "2. peak memory of the processor path",
                    memory::run(sizes.memory_megabytes, sizes.workers),
                )
                .await
            }
            Command::Local => {
                figure(
                    "3. local end to end",
                    local::run(sizes.local_users, sizes.workers),
                )
                .await
            }
            Command::Dynamodb => {
                figure(
                    "4. DynamoDB requests per 1000 users",
                    dynamodb::run(sizes.dynamodb_users),
                )
                .await
            }
            Command::Lambda => {
                figure(
                    "5. Lambda zips and start-up",
                    lambda::run(sizes.start_rounds, !sizes.no_lambda_build),
                )
                .await
            }
            Command::ProcessFile { .. } => continue,
        };
        match measured {
            Some(measured) => figures.extend(measured),
            None => failures += 1,
        }
    }
    println!();
    report::print_table(&figures);
    if failures > 0 {
        return Err(format!("{failures} figure(s) could not be measured"));
    }
    Ok(())
}

/// Runs one figure's measurement, printing its figures (or why it failed) as they come.
async fn figure(
    title: &str,
    measure: impl Future<Output = Result<Vec<Figure>, String>>,
) -> Option<Vec<Figure>> {
    println!("== {title}");
    let started = Instant::now();
    let measured = measure.await;
    match measured {
        Ok(figures) => {
            for figure in &figures {
                figure.print();
            }
            println!("   ({:.1} s)", started.elapsed().as_secs_f64());
            Some(figures)
        }
        Err(error) => {
            println!("  FAILED: {error}");
            None
        }
    }
}
