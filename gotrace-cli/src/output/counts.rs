//! The `FUNC COUNT` table of funccount, in bcc's layout, and its JSON form.
//! Runs over several binaries print a table per binary under a
//! `binary = PATH` line, as bcc prints a histogram per disk under
//! `disk = NAME`.

use std::io::{self, Write};

/// One function's calls in one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    pub function: &'a str,
    /// The binary it is in, as shown.
    pub binary: &'a str,
    pub count: u64,
    /// Taken out for the overhead budget after this many calls.
    pub detached_after: Option<u64>,
}

impl Row<'_> {
    /// The FUNC column: the name, marked if it was taken out.
    fn label(&self) -> String {
        super::row_label(self.function, self.detached_after)
    }
}

/// bcc's width of the FUNC column; longer names widen it, so that counts
/// stay aligned.
const FUNC_WIDTH: usize = 36;

/// Writes bcc funccount's table: a blank line, an optional `HH:MM:SS` line,
/// the header, then functions with a non-zero count, fewest calls first
/// (bcc's order; ties keep the order of `rows`). With `sections`, a table
/// per binary with calls (one empty table if none had any), each under
/// its `binary = PATH` line.
pub fn write_table(
    w: &mut impl Write,
    rows: &[Row<'_>],
    timestamp: Option<&str>,
    sections: bool,
) -> io::Result<()> {
    writeln!(w)?;
    if let Some(timestamp) = timestamp {
        writeln!(w, "{timestamp:<8}")?;
    }
    if !sections {
        return write_rows(w, rows);
    }
    let mut binaries: Vec<&str> = Vec::new();
    for row in rows.iter().filter(|r| r.count != 0) {
        if !binaries.contains(&row.binary) {
            binaries.push(row.binary);
        }
    }
    if binaries.is_empty() {
        return write_rows(w, &[]);
    }
    for (i, binary) in binaries.iter().enumerate() {
        if i > 0 {
            writeln!(w)?;
        }
        writeln!(w, "binary = {binary}")?;
        let mine: Vec<Row<'_>> = rows
            .iter()
            .filter(|r| r.binary == *binary)
            .cloned()
            .collect();
        write_rows(w, &mine)?;
    }
    Ok(())
}

/// The header and the rows with calls.
fn write_rows(w: &mut impl Write, rows: &[Row<'_>]) -> io::Result<()> {
    let rows: Vec<(String, u64)> = sorted(rows).map(|r| (r.label(), r.count)).collect();
    let width = rows
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0)
        .max(FUNC_WIDTH);
    writeln!(w, "{:<width$} {:>8}", "FUNC", "COUNT")?;
    for (label, count) in rows {
        writeln!(w, "{label:<width$} {count:>8}")?;
    }
    Ok(())
}

/// Writes the same data as one JSON object on one line:
/// `{"time":"12:00:00","counts":[{"func":"main.add","binary":"/bin/app","count":3}]}`.
pub fn write_json(w: &mut impl Write, rows: &[Row<'_>], timestamp: Option<&str>) -> io::Result<()> {
    let counts: Vec<_> = sorted(rows)
        .map(|r| {
            let mut row =
                serde_json::json!({ "func": r.function, "binary": r.binary, "count": r.count });
            if let Some(after) = r.detached_after {
                row["detached_after"] = after.into();
            }
            row
        })
        .collect();
    let mut object = serde_json::json!({ "counts": counts });
    if let Some(timestamp) = timestamp {
        object["time"] = timestamp.into();
    }
    writeln!(w, "{object}")
}

fn sorted<'r, 'a>(rows: &'r [Row<'a>]) -> impl Iterator<Item = &'r Row<'a>> {
    let mut rows: Vec<&Row<'a>> = rows.iter().filter(|r| r.count != 0).collect();
    rows.sort_by_key(|r| r.count);
    rows.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row<'static>> {
        vec![
            Row {
                function: "fmt.Fprintln",
                binary: "/bin/a",
                count: 2,
                detached_after: None,
            },
            Row {
                function: "main.unused",
                binary: "/bin/a",
                count: 0,
                detached_after: None,
            },
            Row {
                function: "fmt.(*pp).doPrintln",
                binary: "/bin/a",
                count: 1,
                detached_after: None,
            },
            Row {
                function: "main.add",
                binary: "/bin/a",
                count: 300000,
                detached_after: None,
            },
        ]
    }

    #[test]
    fn table_matches_bcc_layout() {
        let mut out = Vec::new();
        write_table(&mut out, &rows(), None, false).unwrap();
        let expected = "\n\
FUNC                                    COUNT\n\
fmt.(*pp).doPrintln                         1\n\
fmt.Fprintln                                2\n\
main.add                               300000\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn long_names_widen_the_column() {
        let long = "github.com/prometheus/client_golang/prometheus.(*metricMap).getMetricWithHashAndLabelValues";
        let rows = [
            Row {
                function: long,
                binary: "/bin/a",
                count: 55,
                detached_after: None,
            },
            Row {
                function: "main.add",
                binary: "/bin/a",
                count: 300000,
                detached_after: None,
            },
        ];
        let mut out = Vec::new();
        write_table(&mut out, &rows, None, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        // Every count ends in the same column.
        assert!(lines.iter().all(|l| l.len() == long.len() + 9), "{text}");
        assert!(lines[0].starts_with("FUNC "), "{text}");
    }

    #[test]
    fn table_with_timestamp_and_no_rows() {
        let mut out = Vec::new();
        write_table(&mut out, &[], Some("12:34:56"), false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\n12:34:56\nFUNC                                    COUNT\n"
        );
    }

    #[test]
    fn json_is_one_line_per_interval() {
        let mut out = Vec::new();
        write_json(&mut out, &rows(), Some("12:34:56")).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["time"], "12:34:56");
        assert_eq!(value["counts"][0]["func"], "fmt.(*pp).doPrintln");
        assert_eq!(value["counts"][2]["count"], 300000);
        assert_eq!(value["counts"].as_array().unwrap().len(), 3);
        assert_eq!(value["counts"][0]["binary"], "/bin/a");
    }

    #[test]
    fn detached_rows_are_marked() {
        let rows = [Row {
            function: "main.hot",
            binary: "/bin/a",
            count: 1200,
            detached_after: Some(1150),
        }];
        let mut out = Vec::new();
        write_table(&mut out, &rows, None, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("main.hot [detached after 1150 calls]     1200\n"),
            "{text}"
        );
        let mut out = Vec::new();
        write_json(&mut out, &rows, None).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["counts"][0]["detached_after"], 1150);
    }

    #[test]
    fn sections_per_binary() {
        let row = |function, binary, count| Row {
            function,
            binary,
            count,
            detached_after: None,
        };
        // The same function in two binaries: two rows, never one.
        let rows = [
            row("main.add", "/bin/a", 3),
            row("main.add", "/bin/b", 5),
            row("main.sub", "/bin/a", 0),
            row("main.sub", "/bin/c", 0),
        ];
        let mut out = Vec::new();
        write_table(&mut out, &rows, None, true).unwrap();
        let expected = "
binary = /bin/a
FUNC                                    COUNT
main.add                                    3

binary = /bin/b
FUNC                                    COUNT
main.add                                    5
";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        let mut out = Vec::new();
        write_table(&mut out, &rows[2..], None, true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "
FUNC                                    COUNT
"
        );
    }
}
