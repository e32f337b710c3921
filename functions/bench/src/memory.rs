//! Figure 2: peak resident memory of the processor path on a file of at least 250 MB (target:
//! at most 64 MiB). As on AWS, where the intake (validation) and the processor are separate
//! functions, two child processes (this program, `process-file`) work on one embedded store:
//! the first takes the generated file in as `bulk-local` takes in a dropped file (streaming
//! validation, then proceed), the second drains the queue with the local worker, as the
//! processor does. Each reports its own peak resident set size (`VmHWM`). The file is written
//! to disk by the parent, so neither child holds it.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use bulk_users::adapters::embedded;
use bulk_users::local::LocalWorker;
use bulk_users::model::{JobStatus, TenantId, UserFilter};
use bulk_users::ports::{PageRequest, Ports};
use bulk_users::service::{BulkService, IntakeOutcome, ServiceConfig};
use serde::{Deserialize, Serialize};

use crate::report::Figure;
use crate::synthetic::{megabytes, users_for_bytes, write_users};
use crate::TENANT;

/// At most this many MiB resident.
const TARGET_MIB: f64 = 64.0;

/// A child's part of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Streaming validation of the file, then proceed.
    Intake,
    /// Processing every chunk of the job.
    Process,
}

/// What a child reports, as one JSON line on its standard output.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildReport {
    pub peak_rss_bytes: u64,
    pub seconds: f64,
    pub total_rows: u64,
    pub affected_rows: u64,
    pub failed_rows: u64,
    pub stored_users: u64,
}

pub async fn run(min_megabytes: u64, workers: usize) -> Result<Vec<Figure>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let file = dir.path().join("users.json");
    let users = users_for_bytes(min_megabytes * 1_000_000);
    let size = write_file(&file, users)?;
    println!(
        "  generated {users} users, {:.1} MB; processing in a child process ({workers} workers)",
        megabytes(size)
    );
    let data_dir = dir.path().join("data");
    let intake = child(Stage::Intake, &data_dir, &file, workers)?;
    let process = child(Stage::Process, &data_dir, &file, workers)?;
    let exact = intake.total_rows == users as u64
        && process.affected_rows == users as u64
        && process.failed_rows == 0
        && process.stored_users == users as u64;
    if !exact {
        return Err(format!(
            "the counts are not exact: {users} users; {intake:?}; {process:?}"
        ));
    }
    let mib = |report: &ChildReport| report.peak_rss_bytes as f64 / (1024.0 * 1024.0);
    let mb = megabytes(size);
    Ok(vec![
        Figure::plain(
            format!("processor path, {users} users ({mb:.1} MB), {workers} workers"),
            format!(
                "processing {:.1} s ({:.0}k users/s); {} users stored",
                process.seconds,
                users as f64 / process.seconds / 1000.0,
                process.stored_users
            ),
        ),
        Figure::against(
            format!("peak resident memory, processor, {mb:.0} MB file"),
            format!("{:.1} MiB", mib(&process)),
            format!("<= {TARGET_MIB:.0} MiB"),
            mib(&process) <= TARGET_MIB,
        ),
        Figure::plain(
            format!(
                "peak resident memory, intake (streaming validation, {:.1} s), {mb:.0} MB file",
                intake.seconds
            ),
            format!("{:.1} MiB", mib(&intake)),
        ),
    ])
}

/// Runs one stage in a child process and reads its report.
fn child(
    stage: Stage,
    data_dir: &Path,
    file: &Path,
    workers: usize,
) -> Result<ChildReport, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let stage_name = match stage {
        Stage::Intake => "intake",
        Stage::Process => "process",
    };
    let output = Command::new(exe)
        .arg("process-file")
        .arg("--stage")
        .arg(stage_name)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--file")
        .arg(file)
        .arg("--workers")
        .arg(workers.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start the {stage_name} child process: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the {stage_name} child process failed ({}): {stdout}",
            output.status
        ));
    }
    stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| format!("the {stage_name} child process printed no report: {stdout}"))
}

fn write_file(path: &Path, users: usize) -> Result<u64, String> {
    let failed = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).map_err(failed)?);
    write_users(&mut out, users).map_err(failed)?;
    out.flush().map_err(failed)?;
    Ok(std::fs::metadata(path).map_err(failed)?.len())
}

/// A child: one stage of the path over the embedded store, then its report.
pub async fn process_file(
    stage: Stage,
    data_dir: PathBuf,
    file: PathBuf,
    workers: usize,
) -> Result<(), String> {
    let adapters = embedded::open(&data_dir)
        .await
        .map_err(|e| format!("embedded store: {e}"))?;
    let service = BulkService::new(adapters.ports.clone(), ServiceConfig::default());
    let tenant = TenantId::parse(TENANT)?;
    let started = Instant::now();
    match stage {
        Stage::Intake => {
            service
                .ensure_tenant(&tenant)
                .await
                .map_err(|e| format!("tenant: {e}"))?;
            let key = format!("incoming/{TENANT}/proceed/users.json");
            adapters
                .files
                .import(&file, &key)
                .await
                .map_err(|e| format!("taking the file in: {e}"))?;
            match service.intake(&key).await {
                Ok(IntakeOutcome::Job(job)) if job.status == JobStatus::InProgress => {}
                Ok(other) => return Err(format!("the file was not taken in: {other:?}")),
                Err(error) => return Err(format!("intake: {error}")),
            }
        }
        Stage::Process => LocalWorker::new(service.clone(), adapters.queue.clone(), workers)
            .run_until_idle()
            .await
            .map_err(|e| format!("worker: {e}"))?,
    }
    let seconds = started.elapsed().as_secs_f64();

    let ports = service.ports();
    let (jobs, _) = ports
        .jobs
        .list_jobs(
            &tenant,
            PageRequest {
                page: 1,
                per_page: 1,
            },
        )
        .await
        .map_err(|e| format!("jobs: {e}"))?;
    let job = jobs.into_iter().next().ok_or("no job was made")?;
    let expected = match stage {
        Stage::Intake => JobStatus::InProgress,
        Stage::Process => JobStatus::Completed,
    };
    if job.status != expected {
        return Err(format!("the job is not {expected}: {job:?}"));
    }
    let stored_users = stored_users(ports, &tenant).await?;
    let report = ChildReport {
        peak_rss_bytes: peak_rss_bytes()?,
        seconds,
        total_rows: job.total_rows,
        affected_rows: job.affected_rows,
        failed_rows: job.failed_rows,
        stored_users,
    };
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// How many live users the tenant has.
pub async fn stored_users(ports: &Ports, tenant: &TenantId) -> Result<u64, String> {
    let first = PageRequest {
        page: 1,
        per_page: 1,
    };
    ports
        .users
        .list_users(tenant, &UserFilter::default(), first.into())
        .await
        .map(|(_, total)| total)
        .map_err(|e| format!("users: {e}"))
}

/// This process's peak resident set size (`VmHWM` in `/proc/self/status`, Linux).
fn peak_rss_bytes() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status (Linux only): {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| "no VmHWM in /proc/self/status".to_owned())
}
