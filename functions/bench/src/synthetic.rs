//! Deterministic synthetic CCAI upload files: user `i` is always the same record, valid for the
//! default tenant settings.

use std::io::Write;

const ROLES: [&str; 3] = ["Admin", "Manager", "Agent"];
const TEAMS: [&str; 2] = ["Sales", "Support"];

/// Writes user `i` (one JSON object, no separator).
fn write_user(out: &mut impl Write, i: usize) -> std::io::Result<()> {
    let status = if i % 10 == 9 { "Inactive" } else { "Active" };
    write!(
        out,
        r#"{{"email":"user{i}@example.com","first_name":"First{i}","last_name":"Last{i}","agent_number":"{agent}","status":"{status}","roles":[{{"name":"{role}","value":1}}],"teams":[{{"name":"{team}","value":1}}]}}"#,
        agent = 100_000 + i,
        role = ROLES[i % ROLES.len()],
        team = TEAMS[i % TEAMS.len()],
    )
}

/// A file of `count` users, in memory.
pub fn users_file(count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * 210 + 2);
    write_users(&mut out, count).expect("writing to memory cannot fail");
    out
}

/// Writes a file of `count` users.
pub fn write_users(out: &mut impl Write, count: usize) -> std::io::Result<()> {
    out.write_all(b"[")?;
    for i in 0..count {
        if i > 0 {
            out.write_all(b",\n")?;
        }
        write_user(out, i)?;
    }
    out.write_all(b"]")
}

/// How many users make a file of at least `bytes` bytes.
pub fn users_for_bytes(bytes: u64) -> usize {
    let mut sample = Vec::with_capacity(256);
    // `[` and `]`, and `,\n` before every user but the first.
    let (mut users, mut size) = (0usize, 0u64);
    while size < bytes {
        sample.clear();
        write_user(&mut sample, users).expect("writing to memory cannot fail");
        size += sample.len() as u64 + 2;
        users += 1;
    }
    users
}

pub fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_estimate_is_exact_enough() {
        for bytes in [10_000u64, 1_234_567] {
            let users = users_for_bytes(bytes);
            let file = users_file(users);
            assert!(file.len() as u64 >= bytes, "{users} users: {}", file.len());
            assert!((users_file(users - 1).len() as u64) < bytes);
        }
    }
}
