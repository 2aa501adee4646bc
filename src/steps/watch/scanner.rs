//! The matching core of a watch: bytes go in as they arrive, whole lines are counted and matched.
//!
//! Speed comes from never splitting the stream into lines. The `fail_on` patterns are combined
//! into one `regex::bytes::Regex` that searches a whole block of complete lines; lines are counted
//! with `memchr`, and line boundaries are located only around a match. A line cut by a read
//! boundary is carried over (bounded by [`MAX_LINE`]) and completed by the next read.

use anyhow::{Context, Result, bail};
use memchr::{memchr, memchr_iter, memrchr};
use regex::bytes::Regex;
use std::ops::Range;

/// A line longer than this is cut here and matched as if it were two lines, so that memory stays
/// flat even when a writer never sends a newline.
pub const MAX_LINE: usize = 1 << 20;
/// How many matched lines an outcome keeps, and how many characters of each.
pub const KEEP_LINES: usize = 20;
pub const KEEP_CHARS: usize = 500;

/// Why feeding stopped early.
#[derive(Debug, PartialEq)]
pub enum Stop {
    /// More matches than `max` were seen.
    TooMany,
    /// The `until` pattern matched this line.
    Until(String),
}

pub struct Scanner {
    fail: Option<Regex>,
    until: Option<Regex>,
    max: u64,
    carry: Vec<u8>,
    pub lines: u64,
    pub bytes: u64,
    pub matches: u64,
    pub matched_lines: Vec<String>,
}

impl Scanner {
    pub fn new(fail_on: &[String], until: Option<&str>, max: u64) -> Result<Scanner> {
        let fail = combine(fail_on, "fail_on")?;
        let until = match until {
            Some(p) => combine(&[p.to_string()], "until")?,
            None => None,
        };
        Ok(Scanner {
            fail,
            until,
            max,
            carry: Vec::new(),
            lines: 0,
            bytes: 0,
            matches: 0,
            matched_lines: Vec::new(),
        })
    }

    /// Feed the next bytes of the stream. `on_match` sees each line that matched `fail_on`.
    pub fn feed(&mut self, data: &[u8], on_match: &mut dyn FnMut(&str)) -> Option<Stop> {
        self.bytes += data.len() as u64;
        let Some(last_nl) = memrchr(b'\n', data) else {
            return self.extend_carry(data, on_match);
        };
        let mut rest = &data[..=last_nl];
        if !self.carry.is_empty() {
            let first_nl = memchr(b'\n', rest).unwrap_or(last_nl);
            self.carry.extend_from_slice(&rest[..=first_nl]);
            rest = &rest[first_nl + 1..];
            let line = std::mem::take(&mut self.carry);
            if let Some(stop) = self.scan_block(&line, on_match) {
                return Some(stop);
            }
        }
        let stop = self.scan_block(rest, on_match);
        if stop.is_none() {
            self.carry.extend_from_slice(&data[last_nl + 1..]);
        }
        stop
    }

    /// The stream ended (or was rotated away): a last line without a newline still counts.
    pub fn finish(&mut self, on_match: &mut dyn FnMut(&str)) -> Option<Stop> {
        if self.carry.is_empty() {
            return None;
        }
        let line = std::mem::take(&mut self.carry);
        self.scan_block(&line, on_match)
    }

    fn extend_carry(&mut self, data: &[u8], on_match: &mut dyn FnMut(&str)) -> Option<Stop> {
        self.carry.extend_from_slice(data);
        if self.carry.len() < MAX_LINE {
            return None;
        }
        let line = std::mem::take(&mut self.carry);
        self.scan_block(&line, on_match)
    }

    /// Scan a block of whole lines: every line ends with `\n`, except perhaps the last one when
    /// the stream ended or the line was cut at [`MAX_LINE`].
    fn scan_block(&mut self, block: &[u8], on_match: &mut dyn FnMut(&str)) -> Option<Stop> {
        if block.is_empty() {
            return None;
        }
        let until_line = self.until.as_ref().and_then(|re| next_matching_line(re, block, 0));
        let limit = until_line.as_ref().map_or(block.len(), |l| line_end_inclusive(block, l.end));
        if let Some(end) = self.scan_fail(&block[..limit], on_match) {
            self.lines += count_lines(&block[..end]);
            return Some(Stop::TooMany);
        }
        self.lines += count_lines(&block[..limit]);
        until_line.map(|l| Stop::Until(keep(&block[l])))
    }

    /// Count `fail_on` matches; returns where to stop counting lines when `max` was exceeded.
    fn scan_fail(&mut self, block: &[u8], on_match: &mut dyn FnMut(&str)) -> Option<usize> {
        let re = self.fail.as_ref()?;
        let mut from = 0;
        while let Some(line) = next_matching_line(re, block, from) {
            from = line_end_inclusive(block, line.end);
            self.matches += 1;
            let text = keep(&block[line]);
            on_match(&text);
            if self.matched_lines.len() < KEEP_LINES {
                self.matched_lines.push(text);
            }
            if self.matches > self.max {
                return Some(from);
            }
        }
        None
    }
}

/// One regex for a list of patterns, each checked alone first so an error names the bad one.
/// `^` and `$` match at line boundaries (CRLF-aware), as they would in grep.
fn combine(patterns: &[String], field: &str) -> Result<Option<Regex>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    for (i, p) in patterns.iter().enumerate() {
        if p.is_empty() {
            bail!("{field}[{i}] is an empty pattern: it would match every line");
        }
        Regex::new(p).with_context(|| format!("{field}[{i}] `{p}` is not a valid regex"))?;
    }
    let joined: Vec<String> = patterns.iter().map(|p| format!("(?:{p})")).collect();
    let combined = format!("(?mR){}", joined.join("|"));
    let re = regex::bytes::RegexBuilder::new(&combined)
        .size_limit(64 << 20)
        .build()
        .with_context(|| format!("{field}: the patterns together are too large to compile"))?;
    Ok(Some(re))
}

/// The next line (without its `\n`) at or after `from` that `re` matches. `from` is a line start.
/// A match that runs over a newline does not count unless the line matches on its own.
fn next_matching_line(re: &Regex, hay: &[u8], mut from: usize) -> Option<Range<usize>> {
    while from < hay.len() {
        let m = re.find_at(hay, from)?;
        let start = memrchr(b'\n', &hay[from..m.start()]).map_or(from, |i| from + i + 1);
        let end = memchr(b'\n', &hay[m.start()..]).map_or(hay.len(), |i| m.start() + i);
        if start >= hay.len() {
            return None;
        }
        if m.end() <= end || re.is_match(&hay[start..end]) {
            return Some(start..end);
        }
        from = end + 1;
    }
    None
}

/// The offset just past the newline that ends a line ending at `end`.
fn line_end_inclusive(hay: &[u8], end: usize) -> usize {
    (end + 1).min(hay.len())
}

/// Lines in a block: its newlines, plus one for a last line without a newline.
fn count_lines(block: &[u8]) -> u64 {
    let newlines = memchr_iter(b'\n', block).count() as u64;
    let unterminated = !block.is_empty() && block[block.len() - 1] != b'\n';
    newlines + u64::from(unterminated)
}

/// A matched line as reported: lossy UTF-8, without `\r`, cut to [`KEEP_CHARS`] characters.
fn keep(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    match text.char_indices().nth(KEEP_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner(fail: &[&str], until: Option<&str>, max: u64) -> Scanner {
        let fail: Vec<String> = fail.iter().map(|s| s.to_string()).collect();
        Scanner::new(&fail, until, max).unwrap()
    }

    fn feed_all(s: &mut Scanner, chunks: &[&[u8]]) -> Option<Stop> {
        for c in chunks {
            if let Some(stop) = s.feed(c, &mut |_| {}) {
                return Some(stop);
            }
        }
        s.finish(&mut |_| {})
    }

    #[test]
    fn counts_lines_and_matches_in_one_block() {
        let mut s = scanner(&["ERROR", "panicked"], None, 100);
        feed_all(&mut s, &[b"ok\nERROR a\nfine\nthread panicked here\nERROR ERROR\n"]);
        assert_eq!((s.lines, s.matches), (5, 3));
        assert_eq!(s.matched_lines, ["ERROR a", "thread panicked here", "ERROR ERROR"]);
    }

    #[test]
    fn a_match_split_over_two_reads_is_found_once() {
        let mut s = scanner(&["ERROR"], None, 100);
        feed_all(&mut s, &[b"ok\nsome ER", b"", b"R", b"OR here\nlast"]);
        assert_eq!((s.lines, s.matches), (3, 1));
        assert_eq!(s.matched_lines, ["some ERROR here"]);
    }

    #[test]
    fn a_match_across_a_newline_is_not_a_match() {
        let mut s = scanner(&[r"a\s+b"], None, 100);
        feed_all(&mut s, &[b"xa\nb\na  b\n"]);
        assert_eq!((s.lines, s.matches), (3, 1));
    }

    #[test]
    fn anchors_work_per_line() {
        let mut s = scanner(&["^E", "x$"], None, 100);
        feed_all(&mut s, &[b"E1\nnoE\nabx\r\nxab\n"]);
        assert_eq!(s.matches, 2);
    }

    #[test]
    fn max_stops_after_one_more_match_and_counts_lines_to_it() {
        let mut s = scanner(&["E"], None, 1);
        let stop = feed_all(&mut s, &[b"E\nok\nE\nok\nE\n"]);
        assert_eq!(stop, Some(Stop::TooMany));
        assert_eq!((s.lines, s.matches), (3, 2));
    }

    #[test]
    fn until_stops_and_earlier_failures_still_count() {
        let mut s = scanner(&["E"], Some("ready"), 100);
        let stop = feed_all(&mut s, &[b"E1\nok\nready now\nE2\n"]);
        assert_eq!(stop, Some(Stop::Until("ready now".into())));
        assert_eq!((s.lines, s.matches), (3, 1));
    }

    #[test]
    fn an_endless_line_is_cut_and_memory_stays_bounded() {
        let mut s = scanner(&["E"], None, 100);
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..40 {
            s.feed(&chunk, &mut |_| {});
        }
        assert!(s.carry.len() < MAX_LINE);
        assert_eq!(s.lines, 2);
    }

    #[test]
    fn long_matched_lines_are_cut_for_the_report() {
        let mut s = scanner(&["E"], None, 100);
        let line = format!("E{}\n", "é".repeat(900));
        feed_all(&mut s, &[line.as_bytes()]);
        assert_eq!(s.matched_lines[0].chars().count(), KEEP_CHARS + 1);
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = Scanner::new(&["ok".into(), "(".into()], None, 0).err().unwrap();
        assert!(format!("{err:#}").contains("fail_on[1] `(`"), "{err:#}");
    }
}
