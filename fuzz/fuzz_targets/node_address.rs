//! `NodeAddress::parse` (one `NODES` entry): never panics; an accepted
//! address is a normalised http(s) base URL without credentials, query or
//! fragment, and its `name` (what logs show) parses back to the very same
//! address; an error is one short line and never repeats an entry that
//! may carry credentials.
#![no_main]

use api_consumer::domain::NodeAddress;
use node_contract::group_item_path;
use api_consumer_fuzz::{assert_short_line, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let entry = text(data);
    match NodeAddress::parse(&entry) {
        Ok(node) => check_address(&entry, &node),
        Err(message) => {
            assert_short_line("NodeAddress error", &message);
            // Finding the entry in the message can be chance (`s '@` is
            // part of the fixed text): only text that the message for
            // other credentials lacks was repeated.
            if entry.contains('@') && message.contains(entry.as_str()) {
                let other = NodeAddress::parse("user:secret@node").unwrap_err();
                assert!(
                    other.contains(entry.as_str()),
                    "error repeats an entry with credentials: {message:?}"
                );
            }
        }
    }
});

fn check_address(entry: &str, node: &NodeAddress) {
    let base = &node.base;
    assert!(
        matches!(base.scheme(), "http" | "https"),
        "{entry:?} -> {base}"
    );
    assert!(
        base.host_str().is_some_and(|h| !h.is_empty()),
        "{base}: no host"
    );
    assert!(
        base.username().is_empty() && base.password().is_none(),
        "{entry:?} -> {base}: credentials"
    );
    assert_eq!(base.query(), None, "{entry:?} -> {base}");
    assert_eq!(base.fragment(), None, "{entry:?} -> {base}");
    assert!(base.path().ends_with('/'), "{entry:?} -> {base}");
    assert_eq!(node.name, base.as_str().trim_end_matches('/'));
    assert_one_line_name(&node.name);

    // The name is how logs and reports show the node, and how an operator
    // would copy it back into NODES: it must mean the same node.
    let again = NodeAddress::parse(&node.name)
        .unwrap_or_else(|e| panic!("{entry:?} -> {:?} does not re-parse: {e}", node.name));
    assert_eq!(
        &again, node,
        "{entry:?} -> {:?} re-parses differently",
        node.name
    );

    // API paths stay under the base URL, on the same origin.
    let url = base
        .join(&group_item_path("g"))
        .unwrap_or_else(|e| panic!("{base}: cannot join an item path: {e}"));
    assert!(
        url.as_str().starts_with(base.as_str()),
        "{url} escapes {base}"
    );
}

fn assert_one_line_name(name: &str) {
    assert!(
        !name.chars().any(char::is_control),
        "node name {name:?} has a control character"
    );
}
