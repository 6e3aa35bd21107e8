//! The `FUNC COUNT` table of funccount, in bcc's layout, and its JSON form.

use std::io::{self, Write};

/// One function's calls in one interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    pub function: &'a str,
    pub count: u64,
}

/// bcc's width of the FUNC column; longer names widen it, so that counts
/// stay aligned.
const FUNC_WIDTH: usize = 36;

/// Writes bcc funccount's table: a blank line, an optional `HH:MM:SS` line,
/// the header, then functions with a non-zero count, fewest calls first
/// (bcc's order; ties keep the order of `rows`).
pub fn write_table(
    w: &mut impl Write,
    rows: &[Row<'_>],
    timestamp: Option<&str>,
) -> io::Result<()> {
    writeln!(w)?;
    if let Some(timestamp) = timestamp {
        writeln!(w, "{timestamp:<8}")?;
    }
    let rows: Vec<&Row<'_>> = sorted(rows).collect();
    let width = rows
        .iter()
        .map(|r| r.function.chars().count())
        .max()
        .unwrap_or(0)
        .max(FUNC_WIDTH);
    writeln!(w, "{:<width$} {:>8}", "FUNC", "COUNT")?;
    for row in rows {
        writeln!(w, "{:<width$} {:>8}", row.function, row.count)?;
    }
    Ok(())
}

/// Writes the same data as one JSON object on one line:
/// `{"time":"12:00:00","counts":[{"func":"main.add","count":3}]}`.
pub fn write_json(w: &mut impl Write, rows: &[Row<'_>], timestamp: Option<&str>) -> io::Result<()> {
    let counts: Vec<_> = sorted(rows)
        .map(|r| serde_json::json!({ "func": r.function, "count": r.count }))
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
                count: 2,
            },
            Row {
                function: "main.unused",
                count: 0,
            },
            Row {
                function: "fmt.(*pp).doPrintln",
                count: 1,
            },
            Row {
                function: "main.add",
                count: 300000,
            },
        ]
    }

    #[test]
    fn table_matches_bcc_layout() {
        let mut out = Vec::new();
        write_table(&mut out, &rows(), None).unwrap();
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
                count: 55,
            },
            Row {
                function: "main.add",
                count: 300000,
            },
        ];
        let mut out = Vec::new();
        write_table(&mut out, &rows, None).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        // Every count ends in the same column.
        assert!(lines.iter().all(|l| l.len() == long.len() + 9), "{text}");
        assert!(lines[0].starts_with("FUNC "), "{text}");
    }

    #[test]
    fn table_with_timestamp_and_no_rows() {
        let mut out = Vec::new();
        write_table(&mut out, &[], Some("12:34:56")).unwrap();
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
    }
}
