//! Reading one line at a time with bounded memory: a line longer than the
//! limit is skipped through the reader's buffer, never collected whole.

use std::io::{self, BufRead, Read};

/// What [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line, now at the end of the buffer without its terminator.
    Record,
    /// A line longer than the limit, skipped; its length in bytes without
    /// its terminator. The buffer is left as it was.
    TooLong(u64),
}

/// Reads the next line of `reader`, appending it to `buf` without its `\n`
/// or `\r\n` (the bytes `buf` held before are left as they are, so a
/// reader can read straight into a batch's buffer); with `keep_cr`, the
/// `\r` of a `\r\n` is left at the end of the line, so that its bytes
/// can be written back as they were. A line of more than `max` bytes
/// (terminator excluded) is skipped and reported as [`Line::TooLong`], with
/// `buf` as it was; `buf` never grows much beyond `max` bytes past its old
/// end.
/// Returns `None` at end of input (with `buf` as it was), else the line and
/// the bytes it took in the input (terminator included), so callers can
/// tell where each line starts. On an error, `buf` may hold part of the
/// line past its old end.
pub(crate) fn read_line<R: BufRead + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
    keep_cr: bool,
) -> io::Result<Option<(Line, u64)>> {
    let start = buf.len();
    // Room for `max` bytes of content and a `\r\n`.
    let limit = (max as u64).saturating_add(2);
    let n = (&mut *reader).take(limit).read_until(b'\n', buf)? as u64;
    if n == 0 {
        return Ok(None);
    }
    let terminated = buf.last() == Some(&b'\n');
    if terminated || n < limit {
        let mut cr = false;
        if terminated {
            buf.pop();
            if buf.len() > start && buf.last() == Some(&b'\r') {
                buf.pop();
                cr = true;
            }
        }
        let len = buf.len() - start;
        if len <= max {
            if cr && keep_cr {
                buf.push(b'\r');
            }
            return Ok(Some((Line::Record, n)));
        }
        buf.truncate(start);
        return Ok(Some((Line::TooLong(len as u64), n)));
    }
    // The limit was reached mid-line: skip to its end.
    let mut len = n;
    let mut consumed = n;
    let mut last_cr = buf.last() == Some(&b'\r');
    buf.truncate(start);
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(Some((Line::TooLong(len), consumed)));
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if i > 0 {
                    last_cr = chunk[i - 1] == b'\r';
                }
                len = len + i as u64 - u64::from(last_cr);
                consumed += i as u64 + 1;
                reader.consume(i + 1);
                return Ok(Some((Line::TooLong(len), consumed)));
            }
            None => {
                let k = chunk.len();
                last_cr = chunk[k - 1] == b'\r';
                len += k as u64;
                consumed += k as u64;
                reader.consume(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor};

    /// Every line of `input`, each read after the ones before it in one
    /// buffer that starts with bytes of its own (ending in `\r`, which a
    /// line's terminator must not take).
    fn all(input: &[u8], max: usize) -> Vec<String> {
        let lines = all_keeping(input, max, false);
        // Keeping the `\r`s changes nothing else.
        let kept = all_keeping(input, max, true);
        assert_eq!(
            lines,
            kept.iter()
                .map(|l| l.replace("\r!", ""))
                .collect::<Vec<_>>()
        );
        lines
    }

    /// [`all`], each `\r` kept from a `\r\n` shown as `\r!`.
    fn all_keeping(input: &[u8], max: usize, keep_cr: bool) -> Vec<String> {
        let mut reader = BufReader::with_capacity(4, Cursor::new(input.to_vec()));
        let mut buf = b"before\r".to_vec();
        let (mut out, mut consumed) = (Vec::new(), 0);
        loop {
            let start = buf.len();
            let Some((line, n)) = read_line(&mut reader, &mut buf, max, keep_cr).unwrap() else {
                assert_eq!(buf.len(), start, "nothing appended at the end");
                break;
            };
            consumed += n;
            out.push(match line {
                Line::Record => {
                    let mut line = String::from_utf8_lossy(&buf[start..]).into_owned();
                    if keep_cr && line.ends_with('\r') && n as usize > line.len() {
                        line.push('!');
                    }
                    line
                }
                Line::TooLong(n) => {
                    assert_eq!(buf.len(), start, "nothing of a skipped line appended");
                    format!("<{n}>")
                }
            });
        }
        assert!(buf.starts_with(b"before\r"), "the bytes before are kept");
        assert_eq!(consumed, input.len() as u64, "every byte is accounted for");
        out
    }

    #[test]
    fn terminators_are_stripped() {
        assert_eq!(all(b"a\nbb\r\n\nc", 10), ["a", "bb", "", "c"]);
        assert_eq!(all(b"a\n\n", 10), ["a", ""]);
        assert_eq!(all(b"", 10), Vec::<String>::new());
        // A lone `\r` is content.
        assert_eq!(all(b"a\rb\n", 10), ["a\rb"]);
    }

    #[test]
    fn the_cr_of_a_crlf_is_kept_on_request_and_not_counted() {
        let keep = |input: &[u8], max| all_keeping(input, max, true);
        assert_eq!(keep(b"a\r\nb\nc\r\n", 1), ["a\r!", "b", "c\r!"]);
        // A lone `\r`, before a `\r\n` or at the end, is content.
        assert_eq!(keep(b"a\r\r\nb\r", 2), ["a\r\r!", "b\r"]);
        assert_eq!(keep(b"ab\r\nabc\r\n", 2), ["ab\r!", "<3>"]);
    }

    #[test]
    fn lines_at_the_limit_pass_and_longer_ones_are_measured() {
        assert_eq!(all(b"abc\nabcd\nab\n", 3), ["abc", "<4>", "ab"]);
        assert_eq!(all(b"abc\r\nabcd\r\nab", 3), ["abc", "<4>", "ab"]);
        assert_eq!(all(b"abcdefghij\r\nx", 3), ["<10>", "x"]);
        assert_eq!(all(b"abcdefghij\r", 3), ["<11>"]);
        assert_eq!(all(b"abcdefghij", 3), ["<10>"]);
        assert_eq!(all(b"abcd", 3), ["<4>"]);
        assert_eq!(all(b"abcde", 3), ["<5>"]);
        assert_eq!(all(b"abcdefghi\r\r\n", 3), ["<10>"]);
    }

    #[test]
    fn a_huge_line_is_skipped_with_bounded_memory() {
        let mut input = vec![b'x'; 8 << 20];
        input.extend_from_slice(b"\r\nnext\n");
        let mut reader = BufReader::with_capacity(64 << 10, Cursor::new(input));
        let mut buf = Vec::new();
        let line = read_line(&mut reader, &mut buf, 1000, true).unwrap();
        assert_eq!(line, Some((Line::TooLong(8 << 20), (8 << 20) + 2)));
        assert!(buf.capacity() <= 4096, "buffer grew to {}", buf.capacity());
        assert!(buf.is_empty());
        assert_eq!(
            read_line(&mut reader, &mut buf, 1000, true).unwrap(),
            Some((Line::Record, 5))
        );
        assert_eq!(buf, b"next");
        assert_eq!(read_line(&mut reader, &mut buf, 1000, true).unwrap(), None);
    }
}
