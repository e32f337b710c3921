#![no_main]
//! The `job_file` fuzz target: the checks live in `checks/job_file.rs`, which the repository's
//! test command also compiles and runs over the committed seeds.

#[path = "../checks/common.rs"]
mod common;
#[path = "../checks/job_file.rs"]
mod job_file;

libfuzzer_sys::fuzz_target!(|data: &[u8]| job_file::check(data));
