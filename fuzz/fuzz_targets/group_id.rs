//! `GroupId::new` and `api::group_item_path`: a valid id is 1 to 256 bytes,
//! no control character, not `.` or `..`, and its path is exactly one URL
//! segment that decodes back to the id, also after joining onto a node's
//! base URL (the URL parser must not resolve or re-encode it).
#![no_main]

use api_consumer::domain::GroupId;
use node_contract::group_item_path;
use api_consumer_fuzz::{assert_short_line, text};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let raw = text(data);
    match GroupId::new(raw.clone()) {
        Ok(id) => check_valid(&raw, &id),
        Err(message) => {
            assert_short_line("GroupId error", &message);
            let valid_shape = !raw.is_empty()
                && raw.len() <= GroupId::MAX_BYTES
                && !raw.chars().any(char::is_control)
                && raw != "."
                && raw != "..";
            assert!(!valid_shape, "{raw:?} refused: {message}");
        }
    }
});

fn check_valid(raw: &str, id: &GroupId) {
    let id = id.as_str();
    assert_eq!(id, raw, "GroupId::new changed the id");
    assert!(!id.is_empty() && id.len() <= GroupId::MAX_BYTES);
    assert!(
        !id.chars().any(char::is_control),
        "control character in {id:?}"
    );
    assert!(id != "." && id != "..");

    let path = group_item_path(id);
    let segment = path
        .strip_prefix("v1/group/")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected item path {path:?}"));
    assert!(
        !segment.contains(['/', '?', '#', '\\']) && segment.is_ascii(),
        "segment {segment:?} of {id:?} is not one plain path segment"
    );
    assert_eq!(decode(segment), id, "segment {segment:?}");

    for base in ["http://node.example:8080/", "https://[::1]/api/prefix/"] {
        let base = Url::parse(base).expect("constant base URL");
        let url = base
            .join(&path)
            .unwrap_or_else(|e| panic!("cannot join {path:?}: {e}"));
        assert!(
            url.as_str().starts_with(base.as_str()),
            "{url} escapes {base}"
        );
        assert_eq!(url.query(), None, "{url} has a query");
        assert_eq!(url.fragment(), None, "{url} has a fragment");
        let segments: Vec<&str> = url.path_segments().expect("http URL").collect();
        let n = segments.len();
        assert!(n >= 4, "{url}: too few segments");
        assert_eq!(&segments[n - 4..n - 2], ["v1", "group"], "{url}");
        assert_eq!(segments[n - 1], "", "{url}: no trailing slash");
        assert_eq!(decode(segments[n - 2]), id, "{url}");
    }
}

fn decode(segment: &str) -> String {
    percent_decode_str(segment)
        .decode_utf8()
        .unwrap_or_else(|e| panic!("segment {segment:?} is not UTF-8 once decoded: {e}"))
        .into_owned()
}
