//! The few HTTP/1.1 calls the harness makes itself: node-sim's inspection
//! endpoints and the round-trip measurement. Plain `std` sockets, one request
//! at a time, bodies framed by `Content-Length` (or the end of the stream).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A status code and the body that came with it.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One connection to a node, kept alive between requests unless a request
/// asks to close it.
pub struct Conn {
    reader: BufReader<TcpStream>,
    authority: String,
}

/// `127.0.0.1:8080` from `http://127.0.0.1:8080` (or `.../prefix`).
pub fn authority(url: &str) -> Result<&str> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("not an http:// URL: {url:?}"))?;
    Ok(rest.split('/').next().unwrap_or(rest))
}

impl Conn {
    pub fn open(url: &str) -> Result<Self> {
        let authority = authority(url)?.to_string();
        let addr: SocketAddr = authority
            .parse()
            .with_context(|| format!("not an IP address and port: {authority:?}"))?;
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .with_context(|| format!("cannot connect to {authority}"))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
            authority,
        })
    }

    /// Sends one request and reads its whole answer. With `close`, asks the
    /// node to close the connection after answering.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        close: bool,
    ) -> Result<Response> {
        let connection = if close { "close" } else { "keep-alive" };
        let mut message = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: {connection}\r\n",
            self.authority
        )
        .into_bytes();
        match body {
            Some(body) => message.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    body.len()
                )
                .as_bytes(),
            ),
            None if method != "GET" => message.extend_from_slice(b"Content-Length: 0\r\n"),
            None => {}
        }
        message.extend_from_slice(b"\r\n");
        if let Some(body) = body {
            message.extend_from_slice(body);
        }
        let what = format!("{method} {path} on {}", self.authority);
        self.reader
            .get_mut()
            .write_all(&message)
            .with_context(|| format!("cannot send {what}"))?;
        self.read_response()
            .with_context(|| format!("no answer to {what}"))
    }

    fn read_response(&mut self) -> Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("connection closed before the status line");
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| anyhow!("bad status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("connection closed inside the headers");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                bail!("bad header line {header:?}");
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .with_context(|| format!("bad Content-Length {value:?}"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && !value.eq_ignore_ascii_case("identity")
            {
                bail!("unsupported Transfer-Encoding {value:?}");
            }
        }
        let mut body = Vec::new();
        match length {
            Some(length) => {
                body.resize(length, 0);
                self.reader.read_exact(&mut body)?;
            }
            None => {
                self.reader.read_to_end(&mut body)?;
            }
        }
        Ok(Response { status, body })
    }
}

/// `GET path` on a fresh connection; the body as JSON, which must come with
/// a 200.
pub fn get_json(url: &str, path: &str) -> Result<serde_json::Value> {
    let response = Conn::open(url)?.request("GET", path, None, true)?;
    if response.status != 200 {
        bail!("GET {path} on {url} answered {}", response.status);
    }
    serde_json::from_slice(&response.body)
        .with_context(|| format!("GET {path} on {url} did not answer JSON"))
}

/// `POST path` without a body on a fresh connection; must answer 2xx.
pub fn post(url: &str, path: &str) -> Result<()> {
    let response = Conn::open(url)?.request("POST", path, None, true)?;
    if !(200..300).contains(&response.status) {
        bail!("POST {path} on {url} answered {}", response.status);
    }
    Ok(())
}
