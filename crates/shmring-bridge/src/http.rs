//! The HTTP request a connection opens with: a WebSocket upgrade (parsed
//! and answered with tungstenite's handshake functions, from the bridge's
//! own bounded buffer, so bytes a client sends after its request stay
//! ours), or a plain GET for the capture page, the JS client or `/stats`.

use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};

/// Longest request head read; longer ones get 431.
pub(crate) const MAX_REQUEST: usize = 8192;

/// The JS client, served at `/shmring-bridge.js`.
pub const CLIENT_JS: &str = include_str!("../js/shmring-bridge.js");
/// The JS client's file lane, imported by the client, served at
/// `/shmring-file-lane.js`.
pub const FILE_LANE_JS: &str = include_str!("../js/shmring-file-lane.js");
/// The capture page, served at `/`.
pub const CAPTURE_PAGE: &str = include_str!("../js/capture.html");

/// What to do with a connection whose request has been read.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Switch to WebSocket after writing `response` (a 101).
    Upgrade { response: Vec<u8> },
    /// Write `response` and close.
    Reply { response: Vec<u8>, ok: bool },
}

/// The result of reading a request from `buf`.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// More bytes are needed.
    Partial,
    /// The request took `consumed` bytes; answer it so.
    Done { consumed: usize, answer: Answer },
}

/// What the router needs to know about the bridge.
pub(crate) struct Site {
    pub port: u16,
    pub allowed_origins: Option<Vec<String>>,
    pub serve_pages: bool,
    pub stats_json: Box<dyn Fn() -> String + Send + Sync>,
}

fn reply(status: &str, content_type: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn refuse(status: &str, reason: &str) -> Answer {
    Answer::Reply { response: reply(status, "text/plain; charset=utf-8", reason, ""), ok: false }
}

impl Site {
    fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let (Some(list), Some(origin)) = (&self.allowed_origins, origin) else {
            return true;
        };
        let own = [format!("http://127.0.0.1:{}", self.port), format!("http://localhost:{}", self.port)];
        own.iter().chain(list).any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }

    /// Parses the request at the front of `buf` and decides the answer.
    pub(crate) fn parse(&self, buf: &[u8]) -> Parsed {
        let (consumed, request) = match Request::try_parse(buf) {
            Ok(Some(done)) => done,
            Ok(None) if buf.len() >= MAX_REQUEST => {
                return Parsed::Done { consumed: buf.len(), answer: refuse("431 Request Header Fields Too Large", "") }
            }
            Ok(None) => return Parsed::Partial,
            Err(e) => {
                return Parsed::Done {
                    consumed: buf.len(),
                    answer: refuse("400 Bad Request", &format!("malformed request: {e}\n")),
                }
            }
        };
        Parsed::Done { consumed, answer: self.route(&request) }
    }

    fn route(&self, request: &Request) -> Answer {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        let wants_upgrade =
            header("Upgrade").is_some_and(|u| u.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")));
        if wants_upgrade {
            if !self.origin_allowed(header("Origin")) {
                return refuse("403 Forbidden", "origin not allowed by the bridge's allowed origins\n");
            }
            if header("Sec-WebSocket-Version") != Some("13") {
                return Answer::Reply {
                    response: reply("426 Upgrade Required", "text/plain", "", "Sec-WebSocket-Version: 13\r\n"),
                    ok: false,
                };
            }
            // Extensions the client offers (permessage-deflate) are not
            // echoed: per RFC 6455 section 9.1 they are then not in use, and
            // frames with reserved bits set are refused.
            return match create_response(request) {
                Ok(response) => {
                    let mut bytes = Vec::with_capacity(160);
                    write_response(&mut bytes, &response).expect("writing into a Vec cannot fail");
                    Answer::Upgrade { response: bytes }
                }
                Err(e) => refuse("400 Bad Request", &format!("bad WebSocket upgrade: {e}\n")),
            };
        }
        if request.method() != "GET" {
            return refuse("405 Method Not Allowed", "only GET\n");
        }
        if !self.serve_pages {
            return refuse("404 Not Found", "");
        }
        let ok = |content_type: &str, body: &str| Answer::Reply {
            response: reply("200 OK", content_type, body, ""),
            ok: true,
        };
        match request.uri().path() {
            "/" | "/capture.html" => ok("text/html; charset=utf-8", CAPTURE_PAGE),
            "/shmring-bridge.js" => ok("text/javascript; charset=utf-8", CLIENT_JS),
            "/shmring-file-lane.js" => ok("text/javascript; charset=utf-8", FILE_LANE_JS),
            "/stats" => ok("application/json", &(self.stats_json)()),
            _ => refuse("404 Not Found", "no such page\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(allowed: Option<&[String]>) -> Site {
        Site {
            port: 9,
            allowed_origins: allowed.map(|a| a.to_vec()),
            serve_pages: true,
            stats_json: Box::new(|| "{}".to_string()),
        }
    }

    const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1:9\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nOrigin: https://meet.example\r\n\r\n";

    #[test]
    fn an_upgrade_is_answered_with_the_accept_key_and_no_extension() {
        let mut bytes = UPGRADE.as_bytes().to_vec();
        bytes.extend_from_slice(b"\x82\x80"); // the start of a frame, sent early
        let Parsed::Done { consumed, answer: Answer::Upgrade { response } } = site(None).parse(&bytes) else {
            panic!("not an upgrade");
        };
        assert_eq!(consumed, UPGRADE.len(), "bytes after the request stay with the caller");
        let response = String::from_utf8(response).unwrap();
        assert!(response.starts_with("HTTP/1.1 101"));
        assert!(response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{response}");
        assert!(!response.to_ascii_lowercase().contains("extensions"));
    }

    #[test]
    fn partial_oversized_and_forbidden_requests() {
        assert!(matches!(site(None).parse(&UPGRADE.as_bytes()[..40]), Parsed::Partial));
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_REQUEST));
        let Parsed::Done { answer: Answer::Reply { response, ok: false }, .. } = site(None).parse(huge.as_bytes())
        else {
            panic!("expected a refusal");
        };
        assert!(response.starts_with(b"HTTP/1.1 431"));
        let allowed = ["https://other.example".to_string()];
        let Parsed::Done { answer: Answer::Reply { response, .. }, .. } =
            site(Some(&allowed)).parse(UPGRADE.as_bytes())
        else {
            panic!("expected a refusal");
        };
        assert!(response.starts_with(b"HTTP/1.1 403"));
        let allowed = ["https://meet.example".to_string()];
        assert!(matches!(
            site(Some(&allowed)).parse(UPGRADE.as_bytes()),
            Parsed::Done { answer: Answer::Upgrade { .. }, .. }
        ));
    }

    #[test]
    fn pages_are_served() {
        let get = |path: &str| {
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            match site(None).parse(request.as_bytes()) {
                Parsed::Done { answer: Answer::Reply { response, .. }, .. } => String::from_utf8(response).unwrap(),
                other => panic!("{other:?}"),
            }
        };
        assert!(get("/").contains("<html"));
        assert!(get("/shmring-bridge.js").contains("export"));
        assert!(get("/shmring-file-lane.js").contains("export class FileLane"));
        assert!(get("/stats").ends_with("{}"));
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
    }
}
