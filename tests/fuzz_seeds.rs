//! The fuzz targets' checks (`shared/fuzz/checks/`), compiled and run by the test command
//! without libFuzzer: every committed seed of a target, and every input of the hostile corpus
//! (`tests/corpus/hostile/`), goes through the same invariants a fuzz run checks. A change to
//! the validator's API breaks this test rather than the fuzz project alone, and each input a
//! fuzz run once found a bug with (kept as `regression_*` seeds) stays a regression test.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../shared/fuzz/checks/common.rs"]
mod common;
#[path = "../shared/fuzz/checks/dialect_bodies.rs"]
mod dialect_bodies;
#[path = "../shared/fuzz/checks/job_file.rs"]
mod job_file;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the repository")
        .to_path_buf()
}

/// The files of the target's seed directory and of the hostile corpus (its README and the
/// description of the generated inputs aside), sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [
        repository().join("shared/fuzz/seeds").join(target),
        repository().join("tests/corpus/hostile"),
    ] {
        let listed = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
        for entry in listed {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().and_then(|name| name.to_str());
            if path.is_file() && !matches!(name, Some("README.md" | "generated.json")) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs `check` on every input of `target`, and fails naming every input it panicked on.
fn replay(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    let seeds = files
        .iter()
        .filter(|path| path.starts_with(repository().join("shared/fuzz/seeds")))
        .count();
    assert!(seeds >= 5, "only {seeds} seeds for {target}");
    let failed: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let data = std::fs::read(path).expect("read the input");
            catch_unwind(AssertUnwindSafe(|| check(&data)))
                .err()
                .map(|_| {
                    let path = path.strip_prefix(repository()).unwrap_or(path);
                    path.display().to_string()
                })
        })
        .collect();
    println!("{target}: {} inputs checked", files.len());
    assert!(
        failed.is_empty(),
        "the {target} checks failed on: {failed:#?}"
    );
}

#[test]
fn job_file_seeds_and_hostile_inputs_pass_the_fuzz_checks() {
    replay("job_file", job_file::check);
}

#[test]
fn dialect_body_seeds_and_hostile_inputs_pass_the_fuzz_checks() {
    replay("dialect_bodies", dialect_bodies::check);
}
