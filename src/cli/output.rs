//! Text tables for people, JSON for scripts. Pure: the callers print.

/// Columns padded to their widest cell, two spaces apart, a header row
/// first. No trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A list of broker ids as `1,2,3`.
pub fn ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_and_end_without_spaces() {
        let text = table(
            &["NAME", "PARTITIONS"],
            &[vec!["orders".into(), "3".into()], vec!["a".into(), "12".into()]],
        );
        assert_eq!(text, "NAME    PARTITIONS\norders  3\na       12\n");
        assert_eq!(table(&["A", "B"], &[]), "A  B\n");
        assert_eq!(ids(&[1, 2, 3]), "1,2,3");
    }
}
