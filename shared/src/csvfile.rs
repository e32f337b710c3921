//! Streaming reader of CSV job files: the template's layout as a spreadsheet saves it, read
//! row by row from any `AsyncBufRead`, never whole.
//!
//! The first row names the columns: the template's fields, and one column per role and team
//! (`role:{name}`, `team:{name}`) holding `1` (grant), `0` (revoke) or nothing (leave). Each
//! data row is turned into the JSON record it stands for, which the one validation path then
//! judges: an empty cell is JSON's absent field (left as it is), [`CLEAR_MARKER`] JSON's `""`
//! (an optional field cleared). Like the JSON reader, this one only finds where rows end
//! (newlines outside quotes) and reports each row's byte offset, which is how a job is cut into
//! chunks; each row's cells are then parsed on their own by the `csv` crate (RFC 4180 quoting,
//! CRLF or LF), so a bad row is one bad row. A UTF-8 byte order mark (Excel's "CSV UTF-8") is
//! skipped; a header that uses `;` and no `,` makes `;` the delimiter (Excel in many locales).

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::jobfile::{Element, ScanError};
use crate::validation::{RowError, FIELDS, READ_ONLY_FIELDS};

/// The cell that clears an optional field (JSON's `""`); an empty cell leaves it as it is.
pub const CLEAR_MARKER: &str = "(clear)";

/// The trailing columns of a failed-rows report: an upload ignores exactly these.
pub const REPORT_COLUMNS: [&str; 2] = ["error_field", "error_message"];

/// The fields that hold whole numbers.
const NUMBER_FIELDS: [&str; 2] = ["max_chat_limit", "max_chat_limit_enabled"];

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What one column of the file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Field(&'static str),
    Role(String),
    Team(String),
    /// A read-only field of an export, or a report's error column.
    Ignored,
}

/// A problem with the header row: the column (1-based), its header, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderProblem {
    pub column: u32,
    pub header: String,
    pub message: String,
}

/// The columns of a CSV file, read from its header row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvLayout {
    delimiter: u8,
    headers: Vec<String>,
    columns: Vec<Column>,
}

impl CsvLayout {
    /// The layout of a header row (its bytes, without the line break).
    fn parse(row: &[u8]) -> Result<CsvLayout, Vec<HeaderProblem>> {
        let Ok(text) = std::str::from_utf8(row) else {
            return Err(vec![HeaderProblem {
                column: 1,
                header: String::new(),
                message: "the header row is not UTF-8 text: save the file as \"CSV UTF-8\""
                    .to_owned(),
            }]);
        };
        let delimiter = if text.contains(';') && !text.contains(',') {
            b';'
        } else {
            b','
        };
        let headers: Vec<String> = CellParser::new(delimiter)
            .cells(row)
            .map(|cells| cells.iter().map(|cell| cell.trim().to_owned()).collect())
            .unwrap_or_default();
        // A failed-rows report's two error columns, last, are ignored: the report uploads again.
        let report_tail = headers.ends_with(&REPORT_COLUMNS.map(str::to_owned));
        let mut problems = Vec::new();
        let mut columns = Vec::with_capacity(headers.len());
        for (at, header) in headers.iter().enumerate() {
            let column = at as u32 + 1;
            let mut problem = |message: String| {
                problems.push(HeaderProblem {
                    column,
                    header: header.clone(),
                    message,
                })
            };
            if headers[..at].contains(header) {
                problem(format!(
                    "column {column}: the header '{header}' appears more than once"
                ));
            }
            let trailing = report_tail && at + REPORT_COLUMNS.len() >= headers.len();
            match column_of_header(header, trailing) {
                Some(kind) => columns.push(kind),
                None => {
                    problem(unknown_header(column, header));
                    columns.push(Column::Ignored);
                }
            }
        }
        if headers.is_empty() || headers.iter().all(String::is_empty) {
            return Err(vec![HeaderProblem {
                column: 1,
                header: String::new(),
                message: "the header row is empty: it must name the columns".to_owned(),
            }]);
        }
        if problems.is_empty() {
            Ok(CsvLayout {
                delimiter,
                headers,
                columns,
            })
        } else {
            Err(problems)
        }
    }

    /// The role (`roles`) or team (`teams`) names of the columns, in column order.
    pub fn memberships(&self, field: &str) -> Vec<(u32, &str)> {
        self.columns
            .iter()
            .enumerate()
            .filter_map(|(at, column)| match (field, column) {
                ("roles", Column::Role(name)) | ("teams", Column::Team(name)) => {
                    Some((at as u32 + 1, name.as_str()))
                }
                _ => None,
            })
            .collect()
    }

    /// The JSON record a data row stands for, or why it stands for none.
    fn record(&self, parser: &mut CellParser, row: &[u8]) -> Result<Vec<u8>, String> {
        let cells = parser
            .cells(row)
            .map_err(|()| "the row is not UTF-8 text: save the file as \"CSV UTF-8\"".to_owned())?;
        if cells.len() != self.columns.len() {
            return Err(format!(
                "the row has {} cells; the header has {}",
                cells.len(),
                self.columns.len()
            ));
        }
        // Written straight as JSON text (no map of values built and serialised per row).
        let mut record = JsonObject::with_capacity(row.len() * 2);
        for (column, cell) in self.columns.iter().zip(&cells) {
            match column {
                Column::Field(_) if cell.is_empty() => {}
                Column::Field(name) => record.field(name, cell),
                Column::Role(_) | Column::Team(_) | Column::Ignored => {}
            }
        }
        // Every role and team column is in the record, in column order (an empty cell as
        // JSON's `""`, kept as it is): entry `n` of `roles` is the `n`th role column.
        for (list, kind) in [
            ("roles", MembershipKind::Role),
            ("teams", MembershipKind::Team),
        ] {
            let members = self
                .columns
                .iter()
                .zip(&cells)
                .filter_map(|(column, cell)| match (kind, column) {
                    (MembershipKind::Role, Column::Role(name))
                    | (MembershipKind::Team, Column::Team(name)) => Some((name.as_str(), *cell)),
                    _ => None,
                });
            record.memberships(list, members);
        }
        Ok(record.finish())
    }

    /// A record's error in the terms of its file: a CSV file's (`layout`), or a JSON file's
    /// as it is.
    pub fn locate_in(layout: Option<&CsvLayout>, error: RowError) -> RowError {
        match layout {
            Some(layout) => layout.locate(error),
            None => error,
        }
    }

    /// A record's error in the file's terms: the column as the header counts it, `field` the
    /// header's name (`role:{name}` for an entry of `roles`).
    pub fn locate(&self, mut error: RowError) -> RowError {
        let Some(field) = error.field.clone() else {
            return error;
        };
        if field == "roles" || field == "teams" {
            let entry = error
                .message
                .strip_prefix(&format!("{field}["))
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(n, _)| n.parse::<usize>().ok());
            let memberships = self.memberships(&field);
            if let Some(&(column, name)) = entry.and_then(|n| memberships.get(n)) {
                let singular = if field == "roles" { "role" } else { "team" };
                let header = format!("{singular}:{name}");
                let prefix = format!("{field}[{}]", entry.unwrap_or_default());
                error.message = error
                    .message
                    .replacen(&format!("{prefix}.value"), &header, 1)
                    .replacen(&format!("{prefix}.name"), &header, 1);
                error.field = Some(header);
                error.column = Some(column);
            }
            return error;
        }
        error.column = self
            .columns
            .iter()
            .position(|column| matches!(column, Column::Field(name) if *name == field))
            .map(|at| at as u32 + 1);
        error
    }
}

/// What a header names; `None` when it names nothing. The report's error columns are ignored
/// only at the end of the row (`trailing`).
fn column_of_header(header: &str, trailing: bool) -> Option<Column> {
    if let Some(name) = header.strip_prefix("role:") {
        return (!name.trim().is_empty()).then(|| Column::Role(name.trim().to_owned()));
    }
    if let Some(name) = header.strip_prefix("team:") {
        return (!name.trim().is_empty()).then(|| Column::Team(name.trim().to_owned()));
    }
    if let Some(field) = FIELDS
        .iter()
        .find(|field| **field == header && !matches!(**field, "roles" | "teams"))
    {
        return Some(Column::Field(field));
    }
    if READ_ONLY_FIELDS.contains(&header) || (trailing && REPORT_COLUMNS.contains(&header)) {
        return Some(Column::Ignored);
    }
    None
}

fn unknown_header(column: u32, header: &str) -> String {
    let fields: Vec<&str> = FIELDS
        .iter()
        .copied()
        .filter(|field| !matches!(*field, "roles" | "teams"))
        .collect();
    format!(
        "column {column}: unknown header '{}'; the columns are {}, role:{{name}} and team:{{name}}",
        header.chars().take(64).collect::<String>(),
        fields.join(", ")
    )
}

/// Parses rows into their cells: one `csv_core` parser (its state machine built once per
/// file, not once per row) and buffers reused from row to row.
struct CellParser {
    parser: csv_core::Reader,
    output: Vec<u8>,
    ends: Vec<usize>,
}

impl CellParser {
    fn new(delimiter: u8) -> CellParser {
        CellParser {
            parser: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            output: vec![0; 4096],
            ends: vec![0; 64],
        }
    }

    /// The cells of one row (its bytes without the line break); `Err` when a cell is not
    /// UTF-8.
    fn cells(&mut self, row: &[u8]) -> Result<Vec<&str>, ()> {
        use csv_core::ReadRecordResult;
        self.parser.reset();
        let (mut input, mut written, mut ended) = (row, 0, 0);
        loop {
            let (result, read, wrote, ends) = self.parser.read_record(
                input,
                &mut self.output[written..],
                &mut self.ends[ended..],
            );
            input = &input[read..];
            written += wrote;
            ended += ends;
            match result {
                // All of the row is read: an empty input next tells the parser it ends.
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => self.output.resize(self.output.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                ReadRecordResult::Record | ReadRecordResult::End => break,
            }
        }
        // The ends are offsets into the whole row's output.
        let output = &self.output[..written];
        let mut start = 0;
        self.ends[..ended]
            .iter()
            .map(|&end| {
                let cell = std::str::from_utf8(&output[start..end]).map_err(|_| ());
                start = end;
                cell
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum MembershipKind {
    Role,
    Team,
}

/// A JSON object written as text, member by member.
struct JsonObject {
    bytes: Vec<u8>,
}

impl JsonObject {
    fn with_capacity(capacity: usize) -> JsonObject {
        let mut bytes = Vec::with_capacity(capacity);
        bytes.push(b'{');
        JsonObject { bytes }
    }

    fn key(&mut self, name: &str) {
        if self.bytes.len() > 1 {
            self.bytes.push(b',');
        }
        self.string(name);
        self.bytes.push(b':');
    }

    fn string(&mut self, text: &str) {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.bytes, text);
    }

    /// A field's cell: the clear marker as `""`, a whole number of a number field as a
    /// number, anything else as text (validation judges it).
    fn field(&mut self, name: &str, cell: &str) {
        self.key(name);
        if cell == CLEAR_MARKER {
            self.bytes.extend_from_slice(b"\"\"");
        } else if let Some(number) = NUMBER_FIELDS
            .contains(&name)
            .then(|| cell.trim().parse::<i64>().ok())
            .flatten()
        {
            self.bytes.extend_from_slice(number.to_string().as_bytes());
        } else {
            self.string(cell);
        }
    }

    /// `roles` / `teams`: `{"name", "value"}` per column (`1`, `0`, or the cell as text).
    fn memberships<'a>(&mut self, list: &str, members: impl Iterator<Item = (&'a str, &'a str)>) {
        let mut members = members.peekable();
        if members.peek().is_none() {
            return;
        }
        self.key(list);
        self.bytes.push(b'[');
        for (at, (name, cell)) in members.enumerate() {
            if at > 0 {
                self.bytes.push(b',');
            }
            self.bytes.extend_from_slice(b"{\"name\":");
            self.string(name);
            self.bytes.extend_from_slice(b",\"value\":");
            match cell.trim() {
                "1" => self.bytes.push(b'1'),
                "0" => self.bytes.push(b'0'),
                other => self.string(other),
            }
            self.bytes.push(b'}');
        }
        self.bytes.push(b']');
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes.push(b'}');
        self.bytes
    }
}

/// The columns of the tenant's CSV layout, as the template and the export write them: the
/// template's fields, then a column per role and per team, then `extra` (read-only columns an
/// upload ignores).
pub fn layout_headers(roles: &[String], teams: &[String], extra: &[&str]) -> Vec<String> {
    FIELDS
        .iter()
        .filter(|field| !matches!(**field, "roles" | "teams"))
        .map(|field| (*field).to_owned())
        .chain(roles.iter().map(|role| format!("role:{role}")))
        .chain(teams.iter().map(|team| format!("team:{team}")))
        .chain(extra.iter().map(|name| (*name).to_owned()))
        .collect()
}

/// Writes records (JSON objects as the API shows them) as CSV rows under `headers`: a field's
/// value as text (`null` and `""` as an empty cell), a `role:{name}` / `team:{name}` cell `1`
/// when the record's `roles` / `teams` hold that name with value 1, else `0`, so that the rows
/// uploaded again leave every user as it is.
pub fn write_rows<'a>(
    headers: &[String],
    records: impl IntoIterator<Item = &'a Value>,
) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(headers)?;
    for record in records {
        writer.write_record(headers.iter().map(|header| cell(record, header)))?;
    }
    writer
        .into_inner()
        .map_err(|error| error.into_error().into())
}

fn cell(record: &Value, header: &str) -> String {
    let member = |list: &str, name: &str| {
        let granted = record[list].as_array().is_some_and(|entries| {
            entries
                .iter()
                .any(|entry| entry["name"] == name && entry["value"] == 1)
        });
        if granted { "1" } else { "0" }.to_owned()
    };
    if let Some(role) = header.strip_prefix("role:") {
        return member("roles", role);
    }
    if let Some(team) = header.strip_prefix("team:") {
        return member("teams", team);
    }
    match &record[header] {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A CSV job file read row by row: the header first, then each data row as an [`Element`]
/// holding the JSON record it stands for.
pub struct CsvReader<R> {
    reader: R,
    /// Absolute offset of the next unread byte.
    position: u64,
    next_index: u64,
    layout: Option<CsvLayout>,
    /// The parser of the layout's delimiter, once the layout is known.
    parser: Option<CellParser>,
    max_row_bytes: usize,
}

impl<R> CsvReader<R> {
    /// The layout, once the header has been read.
    pub fn known_layout(&self) -> Option<&CsvLayout> {
        self.layout.as_ref()
    }
}

impl<R: AsyncBufRead + Unpin> CsvReader<R> {
    /// A reader at the start of a file: its header comes first.
    pub fn from_start(reader: R, max_row_bytes: usize) -> CsvReader<R> {
        CsvReader {
            reader,
            position: 0,
            next_index: 0,
            layout: None,
            parser: None,
            max_row_bytes,
        }
    }

    /// A reader positioned on the first byte of data row `index` (0-based), at absolute byte
    /// `offset`, of a file whose header is `layout`.
    pub fn at_row(reader: R, layout: CsvLayout, offset: u64, index: u64, max: usize) -> Self {
        CsvReader {
            reader,
            position: offset,
            next_index: index,
            parser: Some(CellParser::new(layout.delimiter)),
            layout: Some(layout),
            max_row_bytes: max,
        }
    }

    /// Reads the header row, if not read yet, and answers the file's layout.
    pub async fn layout(&mut self) -> Result<&CsvLayout, ScanError> {
        if self.layout.is_none() {
            self.skip_bom().await?;
            let Some((_, Some(row), _)) = self.next_row().await? else {
                return Err(ScanError::Empty);
            };
            let layout = CsvLayout::parse(&row).map_err(ScanError::Header)?;
            self.parser = Some(CellParser::new(layout.delimiter));
            self.layout = Some(layout);
        }
        match &self.layout {
            Some(layout) => Ok(layout),
            None => Err(ScanError::Empty),
        }
    }

    /// The next data row, or `None` at the end of the file. Blank lines are skipped.
    pub async fn next_element(&mut self) -> Result<Option<Element>, ScanError> {
        self.layout().await?;
        loop {
            let Some((offset, row, len)) = self.next_row().await? else {
                return Ok(None);
            };
            if row.as_deref().is_some_and(<[u8]>::is_empty) {
                continue;
            }
            let index = self.next_index;
            self.next_index += 1;
            let (bytes, problem) = match (&row, &self.layout, &mut self.parser) {
                (Some(row), Some(layout), Some(parser)) => match layout.record(parser, row) {
                    Ok(record) => (Some(record), None),
                    Err(problem) => (None, Some(problem)),
                },
                _ => (None, None),
            };
            return Ok(Some(Element {
                index,
                offset,
                bytes,
                len,
                problem,
            }));
        }
    }

    /// The next row's offset, bytes (without its line break; `None` when longer than the
    /// limit) and length; `None` at the end of the file.
    async fn next_row(&mut self) -> Result<Option<(u64, Option<Vec<u8>>, u64)>, ScanError> {
        let offset = self.position;
        let mut kept = Some(Vec::new());
        let mut len: u64 = 0;
        let mut quoted = false;
        loop {
            let buffer = self.reader.fill_buf().await?;
            if buffer.is_empty() {
                if len == 0 {
                    return Ok(None);
                }
                break;
            }
            let mut used = buffer.len();
            let mut complete = false;
            for (at, byte) in buffer.iter().enumerate() {
                match byte {
                    b'"' => quoted = !quoted,
                    b'\n' if !quoted => {
                        used = at + 1;
                        complete = true;
                        break;
                    }
                    _ => {}
                }
            }
            if let Some(row) = kept.as_mut() {
                if row.len() + used > self.max_row_bytes + 2 {
                    kept = None;
                } else {
                    row.extend_from_slice(&buffer[..used]);
                }
            }
            len += used as u64;
            self.reader.consume(used);
            self.position += used as u64;
            if complete {
                break;
            }
        }
        if let Some(row) = kept.as_mut() {
            while matches!(row.last(), Some(b'\n' | b'\r')) {
                row.pop();
            }
        }
        Ok(Some((offset, kept, len)))
    }

    async fn skip_bom(&mut self) -> Result<(), ScanError> {
        let buffer = self.reader.fill_buf().await?;
        if buffer.starts_with(BOM) {
            self.reader.consume(BOM.len());
            self.position += BOM.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn rows(text: impl AsRef<[u8]>) -> (Result<CsvLayout, ScanError>, Vec<Element>) {
        let text = text.as_ref().to_vec();
        let mut reader = CsvReader::from_start(std::io::Cursor::new(text), 1024);
        let layout = reader.layout().await.cloned();
        let mut elements = Vec::new();
        if layout.is_ok() {
            while let Some(element) = reader.next_element().await.unwrap() {
                elements.push(element);
            }
        }
        (layout, elements)
    }

    fn json(element: &Element) -> Value {
        serde_json::from_slice(element.bytes.as_deref().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn rows_become_the_json_records_they_stand_for() {
        let text = "\u{feff}email;first_name;max_chat_limit;location;role:Admin;team:Sales\r\n\
                    a@x.io;\"Ann; \"\"the\"\" first\";3;(clear);1;\r\n\
                    \r\n\
                    b@x.io;\"Bo\nB\";x;;0;1\n";
        let (layout, elements) = rows(text).await;
        assert!(layout.is_ok());
        assert_eq!(elements.len(), 2, "the blank line is skipped");
        assert_eq!(
            json(&elements[0]),
            serde_json::json!({"email": "a@x.io", "first_name": "Ann; \"the\" first",
                "max_chat_limit": 3, "location": "",
                "roles": [{"name": "Admin", "value": 1}], "teams": [{"name": "Sales", "value": ""}]})
        );
        assert_eq!(
            json(&elements[1]),
            serde_json::json!({"email": "b@x.io", "first_name": "Bo\nB", "max_chat_limit": "x",
                "roles": [{"name": "Admin", "value": 0}], "teams": [{"name": "Sales", "value": 1}]})
        );
        assert_eq!((elements[0].index, elements[1].index), (0, 1));
        // Offsets point at each row's first byte: a reader started there reads the same row.
        let offset = elements[1].offset as usize;
        assert!(text.as_bytes()[offset..].starts_with(b"b@x.io"));
    }

    #[tokio::test]
    async fn bad_rows_are_bad_rows_and_bad_headers_are_named() {
        let (_, elements) = rows(b"email,first_name\na@x.io\nb@x.io,B,extra\n\"c\xff\",C\n").await;
        let problems: Vec<Option<String>> = elements.iter().map(|e| e.problem.clone()).collect();
        assert_eq!(
            problems[..2],
            [
                Some("the row has 1 cells; the header has 2".to_owned()),
                Some("the row has 3 cells; the header has 2".to_owned())
            ]
        );
        assert!(problems[2].as_deref().unwrap().contains("UTF-8"));

        let (layout, _) = rows("email,colour,email,roles,error_field,error_message\n").await;
        let Err(ScanError::Header(problems)) = layout else {
            panic!("{layout:?}");
        };
        let named: Vec<(u32, &str)> = problems
            .iter()
            .map(|p| (p.column, p.header.as_str()))
            .collect();
        assert_eq!(named, vec![(2, "colour"), (3, "email"), (4, "roles")]);
        assert!(rows("email,error_field,error_message\n").await.0.is_ok());
        assert!(
            rows("error_field,email\n").await.0.is_err(),
            "only trailing"
        );
    }

    #[tokio::test]
    async fn written_rows_read_back_as_the_records_they_came_from() {
        let roles = ["Admin".to_owned(), "Agent".to_owned()];
        let headers = layout_headers(&roles, &["Sales".to_owned()], &["id"]);
        let record = serde_json::json!({"email": "a@x.io", "first_name": "A, \"B\"\nC",
            "last_name": "D", "max_chat_limit": 3, "location": null, "id": 7,
            "roles": [{"name": "Agent", "value": 1}], "teams": []});
        let written = write_rows(&headers, [&record]).unwrap();
        let (layout, elements) = rows(&written).await;
        assert!(layout.is_ok(), "{layout:?}");
        assert_eq!(
            json(&elements[0]),
            serde_json::json!({"email": "a@x.io", "first_name": "A, \"B\"\nC", "last_name": "D",
                "max_chat_limit": 3,
                "roles": [{"name": "Admin", "value": 0}, {"name": "Agent", "value": 1}],
                "teams": [{"name": "Sales", "value": 0}]})
        );
    }

    #[test]
    fn errors_are_located_by_the_header() {
        let layout = CsvLayout::parse(b"first_name,email,role:Admin,role:Agent").unwrap();
        let located = layout.locate(RowError {
            field: Some("email".to_owned()),
            column: Some(1),
            message: "email must be valid".to_owned(),
        });
        assert_eq!(
            (located.field.as_deref(), located.column),
            (Some("email"), Some(2))
        );
        let role = layout.locate(RowError {
            field: Some("roles".to_owned()),
            column: Some(10),
            message: "roles[1].value must be 0, 1 or empty".to_owned(),
        });
        assert_eq!(role.field.as_deref(), Some("role:Agent"));
        assert_eq!(role.column, Some(4));
        assert_eq!(role.message, "role:Agent must be 0, 1 or empty");
    }
}
