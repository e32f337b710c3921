#![no_main]
//! The `dialect_bodies` fuzz target: the checks live in `checks/dialect_bodies.rs`, which the repository's
//! test command also compiles and runs over the committed seeds.

#[path = "../checks/common.rs"]
mod common;
#[path = "../checks/dialect_bodies.rs"]
mod dialect_bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| dialect_bodies::check(data));
