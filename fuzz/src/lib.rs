//! What the fuzz targets share: the checks every message shown to an
//! operator must pass. See docs/FUZZING.md for the targets.

/// Longest message a parser may produce: one log line, not a dump of input.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// A message is one line (a JSON log field, a `kubectl logs` line).
pub fn assert_one_line(what: &str, message: &str) {
    assert!(
        !message.contains(['\n', '\r']),
        "{what} spans several lines: {message:?}"
    );
}

/// [`assert_one_line`], and no longer than [`MAX_MESSAGE_BYTES`].
pub fn assert_short_line(what: &str, message: &str) {
    assert_one_line(what, message);
    assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "{what} is {} bytes long (at most {MAX_MESSAGE_BYTES}): {message:?}",
        message.len()
    );
}

/// Input bytes as text: valid UTF-8 as is, anything else lossily, so the
/// fuzzer's byte mutations still reach the parsers.
pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}
