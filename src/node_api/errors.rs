//! Transport errors and unexpected answers in words, for logs and reports:
//! no URL paths, headers or secrets, and node-chosen text cut short.
//! Also the redirect rule and the TLS provider, whose refusals and failures
//! are described here.

use http::{HeaderMap, StatusCode};
use url::Url;

use crate::domain::truncate;

/// Most redirects followed for one request (each to the same origin).
pub const MAX_REDIRECTS: usize = 5;

/// One human-readable line for a transport error, without URLs (which could
/// carry a path a user considers private) and without headers.
pub fn describe_error(error: &reqwest_middleware::Error) -> String {
    match error {
        reqwest_middleware::Error::Reqwest(e) => {
            let kind = if is_tls_error(error) {
                "TLS handshake failed"
            } else if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connection failed"
            } else if e.is_redirect() {
                "redirect refused"
            } else if e.is_body() || e.is_decode() {
                "body read failed"
            } else if e.is_request() {
                "request failed"
            } else {
                "transport error"
            };
            match causes(error).skip(1).last() {
                Some(root) => format!("{kind}: {root}"),
                None => kind.to_string(),
            }
        }
        reqwest_middleware::Error::Middleware(e) => format!("{e:#}"),
    }
}

/// Installs the process-wide rustls crypto provider (ring) that every
/// reqwest client of this crate uses; call it before building any other
/// `reqwest::Client`. Installing it again is harmless.
pub fn install_tls_provider() {
    // The only error is "already installed", which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether a transport error is a TLS failure (an untrusted or invalid
/// certificate, a handshake refused): retrying cannot fix it.
pub fn is_tls_error(error: &reqwest_middleware::Error) -> bool {
    causes(error).any(|cause| cause.is::<rustls::Error>())
}

/// A transport error and its causes, outermost first. `io::Error::source`
/// skips the error an `io::Error` wraps (and a TLS error sits inside two of
/// them), so the walk steps into the wrapped error instead.
fn causes(
    error: &reqwest_middleware::Error,
) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    let first: Option<&(dyn std::error::Error + 'static)> = match error {
        reqwest_middleware::Error::Reqwest(e) => Some(e),
        reqwest_middleware::Error::Middleware(_) => None,
    };
    std::iter::successors(first, |current| {
        match current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        }
    })
}

pub(super) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// What an unexpected status says, in words: redirects the client did not
/// follow are told apart, since they point at a misconfigured node address.
pub(super) fn describe_status(status: StatusCode, headers: &HeaderMap, url: &Url) -> String {
    if !status.is_redirection() {
        return format!("node answered {status}");
    }
    let location = headers
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok());
    match location.map(|l| url.join(l)) {
        Some(Ok(target)) if !same_origin(url, &target) => format!(
            "node answered {status}: a redirect to another host ({}://{}), not followed",
            target.scheme(),
            truncate(target.host_str().unwrap_or("?"), 64)
        ),
        Some(Ok(_)) => format!("node answered {status}: more than {MAX_REDIRECTS} redirects"),
        Some(Err(_)) | None => format!("node answered {status} without a usable Location"),
    }
}
