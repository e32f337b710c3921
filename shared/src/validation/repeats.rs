//! Emails repeated in a job file, found in bounded memory.
//!
//! Every row's email key goes, with its row, into one of [`BUCKETS`] buckets chosen by its
//! hash, so equal keys always meet in the same bucket. The buckets are held in memory while
//! they are small; once they hold more than their memory budget they are written out to
//! temporary files (unlinked, so they vanish with the process) and every later key is appended
//! there. At the end each bucket is read on its own, in row order, against a map of the keys
//! it has seen: memory stays within the budget plus one bucket's map, whatever the size of the
//! file.

use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

/// How many buckets the keys are spread over.
const BUCKETS: usize = 64;
/// Bytes a held key costs besides its text (row, hash, the string's header, the vector slot).
const HELD_OVERHEAD: usize = 48;

/// A key seen again: the row it is in and the row that had it first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Repeat {
    pub row: u64,
    pub first_row: u64,
    pub key: String,
}

/// One key of one row.
struct Seen {
    hash: u64,
    row: u64,
    key: String,
}

#[derive(Default)]
struct Bucket {
    held: Vec<Seen>,
    spilled: Option<BufWriter<File>>,
}

/// The keys of a file, in row order.
pub struct RepeatedKeys {
    hasher: std::collections::hash_map::RandomState,
    buckets: Vec<Bucket>,
    held_bytes: usize,
    /// Bytes the held keys may take before the buckets go to disk.
    budget: usize,
}

impl RepeatedKeys {
    pub fn new(budget: usize) -> RepeatedKeys {
        RepeatedKeys {
            hasher: std::collections::hash_map::RandomState::new(),
            buckets: (0..BUCKETS).map(|_| Bucket::default()).collect(),
            held_bytes: 0,
            budget,
        }
    }

    /// Notes `key` in `row`; rows come in ascending order.
    pub fn add(&mut self, row: u64, key: &str) -> std::io::Result<()> {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key.as_bytes());
        let hash = hasher.finish();
        let bucket = &mut self.buckets[(hash % BUCKETS as u64) as usize];
        if let Some(file) = &mut bucket.spilled {
            return write_seen(file, hash, row, key);
        }
        bucket.held.push(Seen {
            hash,
            row,
            key: key.to_owned(),
        });
        self.held_bytes += key.len() + HELD_OVERHEAD;
        if self.held_bytes > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Moves every held key to its bucket's file; later keys are appended there.
    fn spill(&mut self) -> std::io::Result<()> {
        for bucket in &mut self.buckets {
            let file = match &mut bucket.spilled {
                Some(file) => file,
                None => bucket
                    .spilled
                    .insert(BufWriter::with_capacity(8 * 1024, tempfile::tempfile()?)),
            };
            for seen in bucket.held.drain(..) {
                write_seen(file, seen.hash, seen.row, &seen.key)?;
            }
            bucket.held = Vec::new();
        }
        self.held_bytes = 0;
        Ok(())
    }

    /// The repeats with the `keep` lowest rows, in row order, and how many repeats there are.
    pub fn finish(self, keep: usize) -> std::io::Result<(Vec<Repeat>, u64)> {
        let mut kept: BinaryHeap<Repeat> = BinaryHeap::new();
        let mut total = 0u64;
        for bucket in self.buckets {
            let mut first_rows: HashMap<u64, u64> = HashMap::new();
            let mut note = |seen: Seen| {
                let first_row = *first_rows.entry(seen.hash).or_insert(seen.row);
                if first_row == seen.row {
                    return;
                }
                total += 1;
                if kept.len() < keep || kept.peek().is_some_and(|last| last.row > seen.row) {
                    kept.push(Repeat {
                        row: seen.row,
                        first_row,
                        key: seen.key,
                    });
                    if kept.len() > keep {
                        kept.pop();
                    }
                }
            };
            if let Some(file) = bucket.spilled {
                let mut file = file.into_inner().map_err(|error| error.into_error())?;
                file.seek(SeekFrom::Start(0))?;
                let mut reader = BufReader::with_capacity(64 * 1024, file);
                while let Some(seen) = read_seen(&mut reader)? {
                    note(seen);
                }
            }
            bucket.held.into_iter().for_each(&mut note);
        }
        Ok((kept.into_sorted_vec(), total))
    }
}

fn write_seen(file: &mut BufWriter<File>, hash: u64, row: u64, key: &str) -> std::io::Result<()> {
    let length = u32::try_from(key.len()).map_err(std::io::Error::other)?;
    file.write_all(&hash.to_le_bytes())?;
    file.write_all(&row.to_le_bytes())?;
    file.write_all(&length.to_le_bytes())?;
    file.write_all(key.as_bytes())
}

fn read_seen(reader: &mut impl Read) -> std::io::Result<Option<Seen>> {
    let mut head = [0u8; 20];
    match reader.read_exact(&mut head) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let number = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let mut length = [0u8; 4];
    length.copy_from_slice(&head[16..20]);
    let mut key = vec![0u8; u32::from_le_bytes(length) as usize];
    reader.read_exact(&mut key)?;
    let key = String::from_utf8(key).map_err(std::io::Error::other)?;
    Ok(Some(Seen {
        hash: number(0),
        row: number(8),
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repeats(budget: usize, keys: &[&str], keep: usize) -> (Vec<(u64, u64, String)>, u64) {
        let mut finder = RepeatedKeys::new(budget);
        for (at, key) in keys.iter().enumerate() {
            finder.add(at as u64 + 1, key).unwrap();
        }
        let (kept, total) = finder.finish(keep).unwrap();
        let kept = kept
            .into_iter()
            .map(|repeat| (repeat.row, repeat.first_row, repeat.key))
            .collect();
        (kept, total)
    }

    #[test]
    fn repeats_name_the_first_row_held_or_spilled() {
        let keys = ["a@x.io", "b@x.io", "a@x.io", "c@x.io", "b@x.io", "a@x.io"];
        let expected = vec![
            (3, 1, "a@x.io".to_owned()),
            (5, 2, "b@x.io".to_owned()),
            (6, 1, "a@x.io".to_owned()),
        ];
        // Held in memory; spilled after the first key; spilled midway.
        for budget in [1 << 20, 0, 3 * (6 + HELD_OVERHEAD)] {
            assert_eq!(
                repeats(budget, &keys, 10),
                (expected.clone(), 3),
                "{budget}"
            );
        }
    }

    #[test]
    fn only_the_lowest_rows_are_kept_but_all_are_counted() {
        let keys: Vec<String> = (0..5000)
            .map(|i| format!("user{}@x.io", i % 1000))
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        for budget in [usize::MAX, 10_000] {
            let (kept, total) = repeats(budget, &keys, 3);
            assert_eq!(total, 4000);
            assert_eq!(
                kept,
                vec![
                    (1001, 1, "user0@x.io".to_owned()),
                    (1002, 2, "user1@x.io".to_owned()),
                    (1003, 3, "user2@x.io".to_owned())
                ]
            );
        }
    }
}
