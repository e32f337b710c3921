//! Streaming reader of job files: a JSON array of users, read element by element from any
//! `AsyncBufRead` (an S3 object stream, a local file, an in-memory upload), never whole.
//!
//! The reader only finds element boundaries (strings, escapes and nesting); each element's bytes
//! are then parsed on their own, so a malformed user is one bad row and the rest of the file is
//! still read. It also reports each element's byte offset, which is how a job is cut into chunks
//! that workers can start reading in the middle of the file.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One element of the array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// 0-based position in the array.
    pub index: u64,
    /// Byte offset of the element's first byte in the file.
    pub offset: u64,
    /// The element's bytes, or `None` when it was longer than the reader's element limit.
    pub bytes: Option<Vec<u8>>,
    /// Length of the element in bytes.
    pub len: u64,
    /// Why the element stands for no record although it was read (a CSV row with the wrong
    /// number of cells, or not UTF-8); `bytes` is then `None`.
    pub problem: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("reading the file failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the file is empty")]
    Empty,
    #[error("the file must be a JSON array of users, but it starts with {found}")]
    NotAnArray { found: String },
    #[error("the file is not valid JSON at byte {offset}: {message}")]
    Syntax { offset: u64, message: String },
    /// The header row of a CSV file names columns that are not the template's.
    #[error("{}", .0.iter().map(|problem| problem.message.as_str()).collect::<Vec<_>>().join("; "))]
    Header(Vec<crate::csvfile::HeaderProblem>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `[` (a UTF-8 byte order mark is skipped).
    BeforeArray,
    /// Right after `[`: an element or `]`.
    FirstElement,
    /// Right after `,`: an element must follow.
    NextElement,
    /// After an element: `,` or `]`.
    AfterElement,
    Done,
}

pub struct ArrayReader<R> {
    reader: R,
    /// Absolute offset of the next unread byte.
    position: u64,
    next_index: u64,
    state: State,
    max_element_bytes: usize,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl<R: AsyncBufRead + Unpin> ArrayReader<R> {
    /// A reader at the start of a file.
    pub fn from_start(reader: R, max_element_bytes: usize) -> ArrayReader<R> {
        ArrayReader {
            reader,
            position: 0,
            next_index: 0,
            state: State::BeforeArray,
            max_element_bytes,
        }
    }

    /// A reader positioned on the first byte of element `index`, at absolute byte `offset`.
    pub fn at_element(reader: R, offset: u64, index: u64, max_element_bytes: usize) -> Self {
        ArrayReader {
            reader,
            position: offset,
            next_index: index,
            state: State::NextElement,
            max_element_bytes,
        }
    }

    /// The next element, or `None` after the closing `]`.
    pub async fn next_element(&mut self) -> Result<Option<Element>, ScanError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::BeforeArray => {
                    self.skip_bom().await?;
                    match self.skip_whitespace().await? {
                        None => return Err(ScanError::Empty),
                        Some(b'[') => {
                            self.advance(1);
                            self.state = State::FirstElement;
                        }
                        Some(other) => {
                            return Err(ScanError::NotAnArray {
                                found: describe_start(other),
                            })
                        }
                    }
                }
                State::FirstElement | State::NextElement => {
                    let first = self.state == State::FirstElement;
                    match self.skip_whitespace().await? {
                        None => return Err(self.syntax("the file ends before the closing ]")),
                        Some(b']') if first => {
                            self.advance(1);
                            return self.finish().await.map(|()| None);
                        }
                        Some(b']') => return Err(self.syntax("a comma is followed by ]")),
                        Some(b',') => return Err(self.syntax("an element is missing before ,")),
                        Some(_) => {
                            let element = self.read_element().await?;
                            self.state = State::AfterElement;
                            return Ok(Some(element));
                        }
                    }
                }
                State::AfterElement => match self.skip_whitespace().await? {
                    None => return Err(self.syntax("the file ends before the closing ]")),
                    Some(b',') => {
                        self.advance(1);
                        self.state = State::NextElement;
                    }
                    Some(b']') => {
                        self.advance(1);
                        return self.finish().await.map(|()| None);
                    }
                    Some(_) => return Err(self.syntax("expected , or ] after an element")),
                },
            }
        }
    }

    /// After the closing `]` only whitespace may follow.
    async fn finish(&mut self) -> Result<(), ScanError> {
        self.state = State::Done;
        match self.skip_whitespace().await? {
            None => Ok(()),
            Some(_) => Err(self.syntax("unexpected data after the closing ]")),
        }
    }

    fn syntax(&self, message: &str) -> ScanError {
        ScanError::Syntax {
            offset: self.position,
            message: message.to_owned(),
        }
    }

    fn advance(&mut self, count: usize) {
        self.reader.consume(count);
        self.position += count as u64;
    }

    /// Skips a byte order mark, which may arrive split across reads.
    async fn skip_bom(&mut self) -> Result<(), ScanError> {
        let mut matched = 0;
        while matched < BOM.len() {
            let buffer = self.reader.fill_buf().await?;
            let available = buffer.len().min(BOM.len() - matched);
            if available == 0 || buffer[..available] != BOM[matched..matched + available] {
                if matched == 0 {
                    return Ok(());
                }
                // Part of a mark, then something else: the file starts with a byte that is
                // not JSON, as it would had the mark arrived whole.
                return Err(ScanError::NotAnArray {
                    found: describe_start(BOM[0]),
                });
            }
            self.advance(available);
            matched += available;
        }
        Ok(())
    }

    /// Skips whitespace and returns the next byte without consuming it.
    async fn skip_whitespace(&mut self) -> Result<Option<u8>, ScanError> {
        loop {
            let buffer = self.reader.fill_buf().await?;
            if buffer.is_empty() {
                return Ok(None);
            }
            match buffer.iter().position(|b| !is_whitespace(*b)) {
                Some(at) => {
                    let byte = buffer[at];
                    self.advance(at);
                    return Ok(Some(byte));
                }
                None => {
                    let len = buffer.len();
                    self.advance(len);
                }
            }
        }
    }

    async fn read_element(&mut self) -> Result<Element, ScanError> {
        let offset = self.position;
        let index = self.next_index;
        self.next_index += 1;
        let mut scanner = ElementScanner::default();
        let mut bytes = Some(Vec::new());
        let mut len: u64 = 0;
        loop {
            let buffer = self.reader.fill_buf().await?;
            if buffer.is_empty() {
                return Err(ScanError::Syntax {
                    offset: self.position,
                    message: format!("the file ends inside row {}", index + 1),
                });
            }
            let (used, complete) = scanner.feed(buffer);
            if let Some(kept) = bytes.as_mut() {
                if kept.len() + used > self.max_element_bytes {
                    bytes = None;
                } else {
                    kept.extend_from_slice(&buffer[..used]);
                }
            }
            len += used as u64;
            self.advance(used);
            if complete {
                return Ok(Element {
                    index,
                    offset,
                    bytes,
                    len,
                    problem: None,
                });
            }
        }
    }
}

/// The formats of a job file, told by its key's extension (`.csv`; anything else is JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Json,
    Csv,
}

impl FileFormat {
    pub fn of_key(key: &str) -> FileFormat {
        if key.to_ascii_lowercase().ends_with(".csv") {
            FileFormat::Csv
        } else {
            FileFormat::Json
        }
    }

    /// The extension of the keys of files in this format.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Json => "json",
            FileFormat::Csv => "csv",
        }
    }
}

/// A job file read record by record, whatever its format: each record as JSON bytes.
pub enum RecordReader<R> {
    Json(ArrayReader<R>),
    // Boxed: a CSV reader holds its parser's state machine.
    Csv(Box<crate::csvfile::CsvReader<R>>),
}

impl<R: AsyncBufRead + Unpin> RecordReader<R> {
    /// A reader at the start of a file.
    pub fn from_start(format: FileFormat, reader: R, max_record_bytes: usize) -> Self {
        match format {
            FileFormat::Json => {
                RecordReader::Json(ArrayReader::from_start(reader, max_record_bytes))
            }
            FileFormat::Csv => RecordReader::Csv(Box::new(crate::csvfile::CsvReader::from_start(
                reader,
                max_record_bytes,
            ))),
        }
    }

    /// The next record, or `None` at the end of the file.
    pub async fn next_element(&mut self) -> Result<Option<Element>, ScanError> {
        match self {
            RecordReader::Json(reader) => reader.next_element().await,
            RecordReader::Csv(reader) => reader.next_element().await,
        }
    }
}

impl<R> RecordReader<R> {
    /// The columns of a CSV file, once its header is read: how its records' errors are
    /// located ([`CsvLayout::locate`](crate::csvfile::CsvLayout::locate)).
    pub fn csv_layout(&self) -> Option<&crate::csvfile::CsvLayout> {
        match self {
            RecordReader::Csv(reader) => reader.known_layout(),
            RecordReader::Json(_) => None,
        }
    }

    /// A record's error in the file's own terms (a CSV file's columns are its header's).
    pub fn locate(&self, error: crate::validation::RowError) -> crate::validation::RowError {
        crate::csvfile::CsvLayout::locate_in(self.csv_layout(), error)
    }
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn describe_start(byte: u8) -> String {
    match byte {
        b'{' => "an object".to_owned(),
        b'"' => "a string".to_owned(),
        b'-' | b'0'..=b'9' => "a number".to_owned(),
        b if b.is_ascii_graphic() => format!("'{}', which is not valid JSON here", b as char),
        _ => "a byte that is not valid JSON here".to_owned(),
    }
}

/// Finds where one JSON value ends, fed piece by piece.
#[derive(Debug, Default)]
struct ElementScanner {
    started: bool,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A bare scalar (number, literal) rather than a string or container.
    scalar: bool,
}

impl ElementScanner {
    /// Consumes bytes of `input` that belong to the value; returns how many, and whether the
    /// value is complete.
    fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let mut at = 0;
        while at < input.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    at += 1;
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', &input[at..]) {
                    None => return (input.len(), false),
                    Some(found) => {
                        at += found;
                        if input[at] == b'\\' {
                            self.escaped = true;
                            at += 1;
                        } else {
                            self.in_string = false;
                            at += 1;
                            if self.depth == 0 {
                                return (at, true);
                            }
                        }
                    }
                }
                continue;
            }
            let byte = input[at];
            if !self.started {
                self.started = true;
                match byte {
                    b'{' | b'[' => self.depth = 1,
                    b'"' => self.in_string = true,
                    _ => self.scalar = true,
                }
                at += 1;
                continue;
            }
            if self.scalar {
                if matches!(byte, b',' | b']' | b'}') || is_whitespace(byte) {
                    return (at, true);
                }
                at += 1;
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return (at + 1, true);
                    }
                }
                _ => {}
            }
            at += 1;
        }
        (input.len(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn elements(text: &[u8], buffer: usize) -> Result<Vec<(u64, String)>, ScanError> {
        let reader = tokio::io::BufReader::with_capacity(buffer, text);
        let mut array = ArrayReader::from_start(reader, 1 << 20);
        let mut out = Vec::new();
        while let Some(element) = array.next_element().await? {
            let bytes = element.bytes.expect("small element");
            out.push((element.offset, String::from_utf8(bytes).unwrap()));
        }
        Ok(out)
    }

    #[tokio::test]
    async fn splits_elements_across_buffer_boundaries() {
        let text = br#"  [ {"a": "x,]}\"y", "b": [1, {"c": 2}]}, "s" , 12.5e3,true,null,[[]] ]  "#;
        for buffer in [1, 2, 3, 7, 64] {
            let found = elements(text, buffer).await.unwrap();
            let values: Vec<&str> = found.iter().map(|(_, v)| v.as_str()).collect();
            assert_eq!(
                values,
                vec![
                    r#"{"a": "x,]}\"y", "b": [1, {"c": 2}]}"#,
                    r#""s""#,
                    "12.5e3",
                    "true",
                    "null",
                    "[[]]"
                ]
            );
            assert_eq!(found[0].0, 4);
        }
    }

    #[tokio::test]
    async fn reads_from_the_middle_of_a_file() {
        let text = br#"[{"n":1}, {"n":2},{"n":3}]"#;
        let all = elements(text, 4).await.unwrap();
        let offset = all[1].0;
        let reader = tokio::io::BufReader::with_capacity(3, &text[offset as usize..]);
        let mut array = ArrayReader::at_element(reader, offset, 1, 1024);
        let second = array.next_element().await.unwrap().unwrap();
        assert_eq!((second.index, second.offset), (1, offset));
        assert_eq!(second.bytes.unwrap(), br#"{"n":2}"#);
        let third = array.next_element().await.unwrap().unwrap();
        assert_eq!(third.index, 2);
        assert!(array.next_element().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn reports_file_level_problems() {
        assert!(matches!(elements(b"", 8).await, Err(ScanError::Empty)));
        assert!(matches!(elements(b"  \n", 8).await, Err(ScanError::Empty)));
        assert!(matches!(
            elements(b"{\"users\": []}", 8).await,
            Err(ScanError::NotAnArray { .. })
        ));
        assert!(matches!(
            elements(b"[{\"a\": 1}", 8).await,
            Err(ScanError::Syntax { .. })
        ));
        assert!(matches!(
            elements(b"[{\"a\": \"1}]", 8).await,
            Err(ScanError::Syntax { .. })
        ));
        assert!(matches!(
            elements(b"[1,]", 8).await,
            Err(ScanError::Syntax { .. })
        ));
        assert!(matches!(
            elements(b"[1] 2", 8).await,
            Err(ScanError::Syntax { .. })
        ));
        assert!(elements(b"[]", 8).await.unwrap().is_empty());
        assert_eq!(elements(b"\xEF\xBB\xBF[1]", 8).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn drops_the_bytes_of_oversized_elements_but_keeps_reading() {
        let text = br#"[{"a":"0123456789"},{"b":1}]"#;
        let mut array =
            ArrayReader::from_start(tokio::io::BufReader::with_capacity(4, &text[..]), 10);
        let big = array.next_element().await.unwrap().unwrap();
        assert!(big.bytes.is_none());
        assert_eq!(big.len, 18);
        let small = array.next_element().await.unwrap().unwrap();
        assert_eq!(small.bytes.unwrap(), br#"{"b":1}"#);
    }

    /// Found by fuzzing: a byte order mark split across reads (a read buffer of 1 or 2 bytes)
    /// was not skipped, so the file was "not an array".
    #[tokio::test]
    async fn skips_a_byte_order_mark_split_across_reads() {
        for buffer in [1, 2, 3, 4, 64] {
            assert!(
                matches!(
                    elements(b"\xEF\xBB\xBF", buffer).await,
                    Err(ScanError::Empty)
                ),
                "{buffer}"
            );
            let found = elements(b"\xEF\xBB\xBF [{\"n\":1}]", buffer).await.unwrap();
            assert_eq!(found, vec![(5, r#"{"n":1}"#.to_owned())], "{buffer}");
            for text in [&b"\xEF\xBB"[..], b"\xEF\xBB[1]", b"\xEF[1]"] {
                match elements(text, buffer).await {
                    Err(ScanError::NotAnArray { found }) => {
                        assert_eq!(found, describe_start(0xEF), "{buffer}")
                    }
                    other => panic!("{buffer}: {other:?}"),
                }
            }
        }
    }
}
