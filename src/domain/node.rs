//! How the configuration names a node: a normalised base URL.

use std::fmt;

use url::Url;

use super::text::quote;

/// How the nodes take creates and deletes (`NODE_PROTOCOL`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeProtocol {
    /// One call each (docs/NODE_API.md).
    #[default]
    Standard,
    /// An intention, then its commit, per session (docs/TWO_PHASE.md).
    TwoPhase,
}

impl NodeProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeProtocol::Standard => "standard",
            NodeProtocol::TwoPhase => "two-phase",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddress {
    /// Base URL that API paths are joined onto; always ends with `/`.
    pub base: Url,
    /// How logs and reports name the node: the base URL without the trailing `/`.
    pub name: String,
}

impl NodeAddress {
    /// Parses one `NODES` entry (already trimmed): a base URL
    /// (`http://host[:port][/prefix]`, `https://...`) or `host[:port]`,
    /// which means `http://host[:port]`. IPv6 literals need brackets
    /// (`[::1]:8080`). The scheme and host are lower-cased, a default port
    /// is dropped and the path gets a trailing `/`, so two spellings of the
    /// same node normalise to the same address.
    ///
    /// The error never repeats an entry that may hold credentials.
    pub fn parse(entry: &str) -> Result<NodeAddress, String> {
        if entry.is_empty() {
            return Err("is empty".to_owned());
        }
        // An `@` means `user:pass@host`: refuse it before any parsing so
        // that no error message can ever carry the password.
        if entry.contains('@') {
            return Err(
                "contains '@': credentials (user:pass@) are not accepted in NODES; \
                 use AUTH_TOKEN (the entry is not shown)"
                    .to_owned(),
            );
        }
        let shown = quote(entry);
        let with_scheme = if entry.contains("://") {
            entry.to_owned()
        } else {
            // `host:port` looks like `scheme:rest` to a URL parser; only a
            // port (digits) may follow the first colon of a scheme-less
            // entry, otherwise it is a malformed URL such as `http:/host`.
            if let Some((before, after)) = entry.split_once(':') {
                let scheme_like = before.starts_with(|c: char| c.is_ascii_alphabetic())
                    && before
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
                let port = after.split_once('/').map_or(after, |(port, _)| port);
                let port_like = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
                if scheme_like && !port_like {
                    return Err(format!(
                        "{shown} is neither a URL (http://host[:port]) nor host[:port]"
                    ));
                }
            }
            format!("http://{entry}")
        };
        let mut url = Url::parse(&with_scheme).map_err(|e| {
            let hint = if !entry.contains('[') && entry.matches(':').count() > 1 {
                " (IPv6 addresses need brackets, e.g. [::1]:8080)"
            } else {
                ""
            };
            format!("{shown} is not a valid URL or host[:port]: {e}{hint}")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            let scheme = quote(url.scheme());
            return Err(format!(
                "{shown} has the scheme {scheme}; only http and https are supported"
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{shown} has no host"));
        }
        // Unreachable after the `@` check, kept so that credentials can
        // never slip through a URL form the check did not anticipate.
        if !url.username().is_empty() || url.password().is_some() {
            return Err("contains credentials (user:pass@); use AUTH_TOKEN \
                 (the entry is not shown)"
                .to_owned());
        }
        if url.query().is_some() {
            return Err(format!("{shown} has a query (?...); a node is a base URL"));
        }
        if url.fragment().is_some() {
            return Err(format!(
                "{shown} has a fragment (#...); a node is a base URL"
            ));
        }
        // Exactly one trailing `/`: the name (the URL without it) then
        // re-parses to the same node, and `/api/` and `/api//` are one node.
        let path = format!("{}/", url.path().trim_end_matches('/'));
        url.set_path(&path);
        let name = url.as_str().trim_end_matches('/').to_owned();
        Ok(NodeAddress { base: url, name })
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
