//! Finding where a file's last lines start, reading backwards from its end
//! one block at a time, so the memory it takes is one block whatever the
//! file's size, the lines' length or the number of lines asked for.

use std::io::SeekFrom;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};

/// Bytes read per step backwards.
pub const BLOCK: usize = 64 * 1024;

/// The offset where the last `lines` lines of the first `len` bytes of
/// `file` start (0 if it has fewer). A line ends with `\n`; a last line
/// without one still counts, and a final `\n` ends the last line rather
/// than starting an empty one. `block` is the read size (tests shrink it).
pub async fn tail_start<F>(
    file: &mut F,
    len: u64,
    lines: usize,
    block: usize,
) -> std::io::Result<u64>
where
    F: AsyncRead + AsyncSeek + Unpin,
{
    if lines == 0 || len == 0 {
        return Ok(len);
    }
    let mut buf = vec![0; block.min(len as usize).max(1)];
    let mut needed = lines;
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(chunk).await?;
        for (i, byte) in chunk.iter().enumerate().rev() {
            let at = start + i as u64;
            // The newline that ends the file ends the last line: skip it.
            if *byte == b'\n' && at + 1 != len {
                needed -= 1;
                if needed == 0 {
                    return Ok(at + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// The text `tail_start` selects from `text`, with block size `block`.
    async fn tail(text: &str, lines: usize, block: usize) -> String {
        let mut file = Cursor::new(text.as_bytes().to_vec());
        let start = tail_start(&mut file, text.len() as u64, lines, block)
            .await
            .unwrap();
        text[start as usize..].to_owned()
    }

    #[tokio::test]
    async fn takes_the_last_lines_with_a_trailing_newline() {
        assert_eq!(tail("a\nb\nc\n", 2, BLOCK).await, "b\nc\n");
        assert_eq!(tail("a\nb\nc\n", 1, BLOCK).await, "c\n");
    }

    #[tokio::test]
    async fn counts_a_last_line_without_a_newline() {
        assert_eq!(tail("a\nb\nc", 1, BLOCK).await, "c");
        assert_eq!(tail("a\nb\nc", 2, BLOCK).await, "b\nc");
    }

    #[tokio::test]
    async fn fewer_lines_than_asked_gives_the_whole_file() {
        assert_eq!(tail("a\nb\n", 5, BLOCK).await, "a\nb\n");
        assert_eq!(tail("only", 3, BLOCK).await, "only");
        assert_eq!(tail("\n", 3, BLOCK).await, "\n");
    }

    #[tokio::test]
    async fn an_empty_file_gives_nothing() {
        assert_eq!(tail("", 10, BLOCK).await, "");
    }

    #[tokio::test]
    async fn empty_lines_are_lines() {
        assert_eq!(tail("a\n\n\n", 2, BLOCK).await, "\n\n");
    }

    #[tokio::test]
    async fn lines_longer_than_a_block_are_found_across_blocks() {
        let long = "x".repeat(100);
        let text = format!("first\n{long}\n{long}\n");
        assert_eq!(tail(&text, 1, 7).await, format!("{long}\n"));
        assert_eq!(tail(&text, 2, 7).await, format!("{long}\n{long}\n"));
        assert_eq!(tail(&text, 3, 7).await, text);
    }

    #[tokio::test]
    async fn every_block_size_agrees_with_a_plain_split() {
        let text = "one\ntwo\n\nfour is longer\nfive\n";
        for block in 1..=text.len() + 1 {
            for lines in 1..=7 {
                let all: Vec<&str> = text.split_inclusive('\n').collect();
                let expected = all[all.len().saturating_sub(lines)..].concat();
                assert_eq!(
                    tail(text, lines, block).await,
                    expected,
                    "block {block}, {lines} lines"
                );
            }
        }
    }

    #[tokio::test]
    async fn only_the_first_len_bytes_count() {
        // A file still being written: lines past the length taken are ignored.
        let text = "a\nb\nc\nd";
        let mut file = Cursor::new(text.as_bytes().to_vec());
        assert_eq!(tail_start(&mut file, 4, 1, BLOCK).await.unwrap(), 2);
    }
}
