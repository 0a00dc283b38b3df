//! Aligned columns, as Docker's tabwriter lays them out: every column as
//! wide as its widest cell plus three spaces, the last cell of a line left
//! as it is. `rbk images`, `history` and `ps` print their default tables
//! with [`print_table`]; `--format 'table …'` aligns its tab-separated
//! output with [`aligned`].

use std::io::{self, Write};

/// Spaces between a column's widest cell and the next column.
const PADDING: usize = 3;

/// `rows` laid out in columns at least `min_width` wide (padding
/// included). A row's last cell does not widen its column: it is never
/// padded. Every line ends in a newline.
pub(crate) fn aligned<S: AsRef<str>>(rows: &[Vec<S>], min_width: usize) -> String {
    let width = |c: &S| c.as_ref().chars().count();
    let mut widths: Vec<usize> = Vec::new();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            let w = (width(c) + PADDING).max(min_width);
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            out.push_str(c.as_ref());
            if i + 1 < r.len() {
                out.push_str(&" ".repeat(widths[i] - width(c)));
            }
        }
        out.push('\n');
    }
    out
}

/// Prints a table: `header`, then `rows`, in aligned columns.
pub(crate) fn print_table(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let mut all: Vec<Vec<&str>> = Vec::with_capacity(rows.len() + 1);
    all.push(header.to_vec());
    all.extend(rows.iter().map(|r| r.iter().map(String::as_str).collect()));
    out.write_all(aligned(&all, 0).as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["a".to_string(), "bb".to_string(), "c".to_string()],
            vec!["dddd".to_string(), "e".to_string(), "fffff".to_string()],
        ];
        print_table(&mut out, &["X", "Y", "Z"], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X      Y    Z\na      bb   c\ndddd   e    fffff\n"
        );
    }

    #[test]
    fn a_minimum_width_and_ragged_rows() {
        let rows = vec![vec!["ID", "NAME"], vec!["1", "x", "extra"], vec!["only"]];
        assert_eq!(
            aligned(&rows, 10),
            "ID        NAME\n1         x         extra\nonly\n"
        );
    }
}
