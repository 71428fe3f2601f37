//! The capture page and the JS client, served by this process on loopback
//! for every browser run alike (whichever receiver the page then sends
//! to): the bridge's own files, as the bridge serves them.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

const FILES: [(&str, &str, &str); 3] = [
    ("/", "text/html", include_str!("../../../crates/shmring-bridge/js/capture.html")),
    ("/shmring-bridge.js", "text/javascript", include_str!("../../../crates/shmring-bridge/js/shmring-bridge.js")),
    (
        "/shmring-file-lane.js",
        "text/javascript",
        include_str!("../../../crates/shmring-bridge/js/shmring-file-lane.js"),
    ),
];

/// Serves the pages until the process ends.
pub fn serve() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("page server: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("page server: {e}"))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    Ok(addr)
}

fn answer(mut stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // The headers, read to their end so that closing sends no reset.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or("/");
    let response = match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, mime, body)) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {mime}; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    };
    let _ = stream.write_all(response.as_bytes());
}
