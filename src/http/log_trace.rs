//! `GET /logs?traceId=`: the lines of one trace, picked as the file
//! streams. Every line written inside a span ends with `trace_id=<32 hex>
//! span_id=<16 hex>` (`crate::telemetry`), so a trace's lines are the ones
//! holding `trace_id=<its id>`. One line is held at a time, and at most
//! [`MAX_LINE`] bytes of it: a longer line is looked at in its first
//! [`MAX_LINE`] bytes only (and so not matched: the ids end the line).

use axum::body::Bytes;
use futures::Stream;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The most of one line held in memory.
pub const MAX_LINE: usize = 64 * 1024;

/// Whether `value` is a trace id as the logs write it: 32 lower-case hex
/// digits, not all zero (the W3C's invalid id).
pub fn is_trace_id(value: &str) -> bool {
    value.len() == 32
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && value.bytes().any(|b| b != b'0')
}

/// The lines of `reader` written inside trace `trace_id`, each with its
/// newline, in order.
pub fn trace_lines<R>(reader: R, trace_id: &str) -> impl Stream<Item = std::io::Result<Bytes>>
where
    R: AsyncBufRead + Unpin,
{
    let needle = format!("trace_id={trace_id}").into_bytes();
    futures::stream::try_unfold((reader, needle), |(mut reader, needle)| async move {
        while let Some(line) = read_line(&mut reader).await? {
            if line.windows(needle.len()).any(|window| window == needle) {
                return Ok(Some((Bytes::from(line), (reader, needle))));
            }
        }
        Ok::<_, std::io::Error>(None)
    })
}

/// The next line with its `\n` (the last may lack one), its first
/// [`MAX_LINE`] bytes if it is longer; `None` at the end.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(line));
        }
        let newline = buf.iter().position(|b| *b == b'\n');
        let used = newline.map_or(buf.len(), |at| at + 1);
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&buf[..used.min(room)]);
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use tokio::io::BufReader;

    use super::*;

    const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    async fn picked(text: &[u8], capacity: usize) -> String {
        let reader = BufReader::with_capacity(capacity, text);
        let chunks: Vec<Bytes> = trace_lines(reader, ID).try_collect().await.unwrap();
        String::from_utf8(chunks.concat()).unwrap()
    }

    #[tokio::test]
    async fn only_the_traces_lines_are_kept_whatever_the_read_size() {
        let text = format!(
            "a INFO started\n\
             b INFO signup trace_id={ID} span_id=00f067aa0ba902b7\n\
             c INFO other trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331\n\
             d WARN slow trace_id={ID} span_id=1111111111111111"
        );
        let want = format!(
            "b INFO signup trace_id={ID} span_id=00f067aa0ba902b7\n\
             d WARN slow trace_id={ID} span_id=1111111111111111"
        );
        for capacity in [1, 7, 64, 8192] {
            assert_eq!(picked(text.as_bytes(), capacity).await, want, "{capacity}");
        }
        assert_eq!(picked(b"", 8).await, "");
    }

    #[tokio::test]
    async fn a_line_is_held_at_most_max_line_bytes() {
        let mut long = vec![b'x'; MAX_LINE * 3];
        long.extend_from_slice(format!(" trace_id={ID}\n").as_bytes());
        let mut reader = BufReader::new(&long[..]);
        let line = read_line(&mut reader).await.unwrap().unwrap();
        assert_eq!(line.len(), MAX_LINE);
        assert!(read_line(&mut reader).await.unwrap().is_none());
        let mut text = long.clone();
        text.extend_from_slice(format!("short trace_id={ID}\n").as_bytes());
        assert_eq!(picked(&text, 4096).await, format!("short trace_id={ID}\n"));
    }

    #[test]
    fn a_trace_id_is_32_lower_case_hex_digits_not_all_zero() {
        assert!(is_trace_id(ID));
        for bad in [
            "",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e47360",
            "4BF92F3577B34DA6A3CE929D0E0E4736",
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "00000000000000000000000000000000",
            "4bf92f3577b34da6a3ce929d0e0e47 6",
        ] {
            assert!(!is_trace_id(bad), "{bad:?}");
        }
    }
}
