//! `tasklog-healthcheck`: the container HEALTHCHECK. Asks the service in the
//! same container (at `BIND_ADDR`, or `HEALTHCHECK_ADDR`) for `/health/ready`
//! and exits 0 only on a 200, so the image needs no curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

fn target() -> Result<SocketAddr, String> {
    let raw = std::env::var("HEALTHCHECK_ADDR")
        .or_else(|_| std::env::var("BIND_ADDR"))
        .map_err(|_| "set BIND_ADDR or HEALTHCHECK_ADDR".to_owned())?;
    let mut addr = raw
        .to_socket_addrs()
        .map_err(|e| format!("{raw}: {e}"))?
        .next()
        .ok_or_else(|| format!("{raw}: no address"))?;
    // A service bound to every interface is reached on loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

fn probe(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut head = [0_u8; 32];
    let n = stream.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {line:?}"))
}

fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/health/ready".to_owned());
    match target().and_then(|addr| probe(addr, &path)) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("{path} answered {code}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("health check failed: {e}");
            ExitCode::FAILURE
        }
    }
}
