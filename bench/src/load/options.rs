//! The `load` subcommand's arguments and the checks on them: durations like
//! `30s`, loopback-only targets, and closed- versus open-loop mode.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use url::{Host, Url};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// POST /v1/tasks.
    Create,
    /// PATCH /v1/tasks/{id}: blind and If-Match updates, some deliberately stale.
    Patch,
    /// GET /v1/tasks: first pages, later pages by cursor, filters, search.
    List,
    /// 90% reads (lists and gets), 10% writes (creates and patches).
    Mixed,
    /// Creates, and the time until the query side has projected each one.
    Lag,
}

/// Which list requests the `list` and `mixed` scenarios send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListMix {
    /// Plain first pages, filters, search, and walks by next_cursor.
    All,
    /// Only the plain first page (default sort, limit 20): the exact query
    /// that `bench/limits.sh` runs with pgbench, for a like-for-like ratio.
    First,
}

/// How lag is observed (see bench/README.md for the trade-off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LagProbe {
    /// One observer polls the query service's `/health/live` back to back
    /// and reads `X-Projection-Position`; writers never wait. Resolution: one poll.
    Header,
    /// Each writer reads its task back with `X-Min-Position` after the 2xx:
    /// the read-your-writes delay a client sees, including one round trip.
    MinPosition,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Users registered before the run; the load is spread over them.
    #[arg(long, default_value_t = 64)]
    pub users: usize,
    /// Closed loop: this many requests in flight. With --rate: the most in flight.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Open loop: requests per second, latency counted from each request's
    /// intended send time (no coordinated omission).
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long the measured phase runs, e.g. 30s, 2m, 500ms.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "http://127.0.0.1:8081", value_parser = loopback_url)]
    pub command_url: Url,
    #[arg(long, default_value = "http://127.0.0.1:8082", value_parser = loopback_url)]
    pub query_url: Url,
    /// One address for both sides (the gateway); overrides the two above.
    #[arg(long, value_parser = loopback_url)]
    pub base_url: Option<Url>,
    /// Print the report as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Tasks created per user before patch, list, mixed and lag runs.
    #[arg(long, default_value_t = 30)]
    pub tasks_per_user: usize,
    /// Share of patches sent with a correct If-Match (the rest are blind).
    #[arg(long, default_value_t = 0.5, value_parser = share)]
    pub if_match_share: f64,
    /// Share of patches sent with a stale If-Match on purpose: their 412s are
    /// counted apart, not as errors.
    #[arg(long, default_value_t = 0.05, value_parser = share)]
    pub conflict_share: f64,
    /// Most pages one list walk follows by next_cursor.
    #[arg(long, default_value_t = 3)]
    pub max_pages: usize,
    /// `first`: only plain first pages, the query pgbench runs in limits.sh.
    #[arg(long, value_enum, default_value = "all")]
    pub list_mix: ListMix,
    #[arg(long, value_enum, default_value = "header")]
    pub lag_probe: LagProbe,
    /// Report a process's peak RSS (VmHWM) at the end: `name=pid`, repeatable.
    #[arg(long = "rss", value_parser = name_pid)]
    pub rss: Vec<(String, u32)>,
    /// Report the CPU time a process and its descendants used during the
    /// measured window, per acknowledged request: `name=pid`, repeatable
    /// (Postgres's postmaster pid covers its backends).
    #[arg(long = "cpu", value_parser = name_pid)]
    pub cpu: Vec<(String, u32)>,
    /// With `--cpu` on a Postgres postmaster: count only the backends of this
    /// database (and the server's own workers), not other work on the server.
    #[arg(long)]
    pub cpu_database: Option<String>,
    /// Registrations in flight at once (each is an Argon2 hash on the server).
    #[arg(long, default_value_t = 2)]
    pub register_concurrency: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Closed loop (a fixed number of requests in flight) or open loop (a fixed
/// arrival rate, with a cap on what may be in flight).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Closed { connections: usize },
    Open { rate: f64, max_in_flight: usize },
}

/// In flight at most in open loop when --connections is not given.
pub const DEFAULT_OPEN_IN_FLIGHT: usize = 256;
pub const DEFAULT_CONNECTIONS: usize = 32;

impl Args {
    /// # Errors
    /// A rate that is not a positive number, or zero connections or users.
    pub fn mode(&self) -> Result<Mode, String> {
        if self.users == 0 {
            return Err("--users must be at least 1".into());
        }
        if self.connections == Some(0) {
            return Err("--connections must be at least 1".into());
        }
        match self.rate {
            Some(rate) if !(rate.is_finite() && rate > 0.0) => {
                Err("--rate must be a positive number of requests per second".into())
            }
            Some(rate) => Ok(Mode::Open {
                rate,
                max_in_flight: self.connections.unwrap_or(DEFAULT_OPEN_IN_FLIGHT),
            }),
            None => Ok(Mode::Closed {
                connections: self.connections.unwrap_or(DEFAULT_CONNECTIONS),
            }),
        }
    }

    /// (command side, query side).
    pub fn targets(&self) -> (Url, Url) {
        match &self.base_url {
            Some(base) => (base.clone(), base.clone()),
            None => (self.command_url.clone(), self.query_url.clone()),
        }
    }
}

impl Mode {
    pub fn workers(self) -> usize {
        match self {
            Mode::Closed { connections } => connections,
            Mode::Open { max_in_flight, .. } => max_in_flight,
        }
    }
}

/// `30s`, `2m`, `1h`, `250ms`, or a bare number of seconds.
///
/// # Errors
/// Anything else, or zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s, 2m or 500ms"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s, m or h")),
    };
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 1e7) {
        return Err(format!("`{text}` must be more than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// An http(s) URL on this machine; anything else is refused, so the load
/// generator cannot be pointed at someone else's server by mistake.
///
/// # Errors
/// Not a URL, not http(s), or a host other than a loopback address or `localhost`.
pub fn loopback_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}`: only http and https are supported"));
    }
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if loopback {
        Ok(url)
    } else {
        Err(format!(
            "`{text}` is not a loopback address: the load generator only targets this machine"
        ))
    }
}

/// A share between 0 and 1.
///
/// # Errors
/// Not a number in [0, 1].
pub fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{text}` must be a number from 0 to 1")),
    }
}

/// `name=pid`.
///
/// # Errors
/// No `=`, an empty name, or a pid that is not a number.
pub fn name_pid(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` must be name=pid, e.g. command=1234"))?;
    let pid = pid
        .trim()
        .parse()
        .map_err(|_| format!("`{pid}` is not a process id"))?;
    if name.trim().is_empty() {
        return Err(format!("`{text}` needs a name before ="));
    }
    Ok((name.trim().to_owned(), pid))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(line: &[&str]) -> Result<Args, String> {
        Cli::try_parse_from(std::iter::once("load").chain(line.iter().copied()))
            .map(|c| c.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_take_the_usual_units() {
        let cases = [
            ("30s", 30_000),
            ("30", 30_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("250ms", 250),
            ("1.5s", 1_500),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_millis(ms),
                "{text}"
            );
        }
        for bad in ["", "s", "0s", "-1s", "10x", "ten seconds", "1e9h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_loopback_targets_are_accepted() {
        for ok in [
            "http://127.0.0.1:8081",
            "http://127.3.4.5",
            "http://localhost:8080/",
            "http://LOCALHOST",
            "https://[::1]:8443",
        ] {
            assert!(loopback_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:8081",
            "http://example.com",
            "http://localhost.example.com",
            "http://0.0.0.0:8081",
            "http://[::]:8081",
            "ftp://127.0.0.1",
            "127.0.0.1:8081",
            "http://192.168.1.2",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connections_alone_are_a_closed_loop() {
        let args = parse(&["create", "--connections", "32"]).unwrap();
        assert_eq!(args.mode().unwrap(), Mode::Closed { connections: 32 });
        assert_eq!(args.scenario, Scenario::Create);
        assert_eq!(args.duration, Duration::from_secs(30));
    }

    #[test]
    fn a_rate_is_an_open_loop_capped_by_connections() {
        let args = parse(&["lag", "--rate", "200", "--duration", "10s"]).unwrap();
        assert_eq!(
            args.mode().unwrap(),
            Mode::Open {
                rate: 200.0,
                max_in_flight: DEFAULT_OPEN_IN_FLIGHT
            }
        );
        let args = parse(&["mixed", "--rate", "50.5", "--connections", "8"]).unwrap();
        assert_eq!(
            args.mode().unwrap(),
            Mode::Open {
                rate: 50.5,
                max_in_flight: 8
            }
        );
    }

    #[test]
    fn nonsense_counts_and_rates_are_refused() {
        for line in [
            &["create", "--rate", "0"][..],
            &["create", "--rate", "-3"],
            &["create", "--rate", "NaN"],
            &["create", "--connections", "0"],
            &["create", "--users", "0"],
        ] {
            let refused = parse(line).map_or(true, |a| a.mode().is_err());
            assert!(refused, "{line:?}");
        }
    }

    #[test]
    fn the_gateway_address_serves_both_sides() {
        let args = parse(&["list", "--base-url", "http://127.0.0.1:8080"]).unwrap();
        let (command, query) = args.targets();
        assert_eq!(command.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(query, command);
        let args = parse(&["list"]).unwrap();
        let (command, query) = args.targets();
        assert_eq!(command.port(), Some(8081));
        assert_eq!(query.port(), Some(8082));
    }

    #[test]
    fn remote_targets_and_bad_shares_fail_at_parsing() {
        assert!(parse(&["create", "--command-url", "http://10.1.1.1:8081"]).is_err());
        assert!(parse(&["create", "--base-url", "http://example.org"]).is_err());
        assert!(parse(&["patch", "--conflict-share", "1.5"]).is_err());
        assert!(parse(&["patch", "--if-match-share", "0.3"]).is_ok());
        assert!(parse(&["flood"]).is_err());
    }

    #[test]
    fn rss_watches_are_name_equals_pid() {
        assert_eq!(name_pid("command=42").unwrap(), ("command".into(), 42));
        assert!(name_pid("command").is_err());
        assert!(name_pid("=42").is_err());
        assert!(name_pid("query=abc").is_err());
    }
}
