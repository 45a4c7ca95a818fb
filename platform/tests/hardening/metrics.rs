//! `/metrics`: text in the Prometheus exposition format (checked line by line
//! against the format's grammar), with request counts per route template and
//! status, latency histograms and pool gauges.

use std::collections::BTreeMap;

use crate::support::{header, spawn};

/// One sample line: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `{a="x",b="y\"z"}` → labels and the rest of the line.
fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    s = s.strip_prefix('{').ok_or("labels must open with {")?;
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (name, rest) = s.split_once("=\"").ok_or("label without =\"")?;
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("newline in label value".into()),
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_owned(), value);
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// Parses the whole text, failing on any line the format does not allow or
/// any sample of a family with no `# TYPE` before it.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut typed = BTreeMap::new();
    let mut samples = vec![];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if words.first() == Some(&"TYPE") {
                let [_, name, kind] = words[..] else {
                    return Err(format!("bad TYPE line {line:?}"));
                };
                if !is_name(name, true)
                    || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
                {
                    return Err(format!("bad TYPE line {line:?}"));
                }
                typed.insert(name.to_owned(), kind.to_owned());
            }
            continue;
        }
        let split = line
            .find(['{', ' '])
            .ok_or(format!("no value in {line:?}"))?;
        let name = &line[..split];
        if !is_name(name, true) {
            return Err(format!("bad metric name in {line:?}"));
        }
        let (labels, rest) = if line[split..].starts_with('{') {
            parse_labels(&line[split..]).map_err(|e| format!("{e} in {line:?}"))?
        } else {
            (BTreeMap::new(), &line[split..])
        };
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().ok_or(format!("no value in {line:?}"))?)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| format!("bad timestamp in {line:?}"))?;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains_key(*f)))
            .unwrap_or(name);
        if !typed.contains_key(family) {
            return Err(format!("sample of {family} without # TYPE"));
        }
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(samples)
}

fn find<'s>(samples: &'s [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'s Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

#[test]
fn the_checker_refuses_what_prometheus_refuses() {
    assert!(parse("# TYPE a counter\na{x=\"1\"} 2\n").is_ok());
    assert!(parse("a 1\n").is_err(), "no TYPE");
    assert!(parse("# TYPE a counter\na{x=1} 2\n").is_err(), "unquoted");
    assert!(
        parse("# TYPE a counter\na{x=\"1} 2\n").is_err(),
        "unterminated"
    );
    assert!(parse("# TYPE a counter\na{x=\"1\"}\n").is_err(), "no value");
    assert!(parse("# TYPE 1a counter\n").is_err(), "bad name");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn(&[]).await;
    for id in ["a1", "b2", "c3"] {
        assert_eq!(
            app.get(&format!("/v1/items/{id}"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(app.get("/v1/me").send().await.unwrap().status(), 401);
    assert_eq!(
        app.get("/no/such/thing").send().await.unwrap().status(),
        404
    );

    let response = app.get("/metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        header(&response, "content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let samples = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let items = find(
        &samples,
        "http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/v1/items/{id}"),
            ("status", "200"),
        ],
    );
    assert_eq!(items.len(), 1, "one series for every id");
    // Other tests in this process hit the same route: at least ours.
    assert!(items[0].value >= 3.0);
    assert!(
        !text.contains("/v1/items/a1"),
        "raw paths never become labels"
    );
    assert_eq!(
        find(
            &samples,
            "http_requests_total",
            &[("route", "/v1/me"), ("status", "401")]
        )
        .len(),
        1
    );
    assert!(
        !find(
            &samples,
            "http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        )
        .is_empty()
    );
    let buckets = find(
        &samples,
        "http_request_duration_seconds_bucket",
        &[("route", "/v1/items/{id}"), ("status", "200")],
    );
    assert!(
        buckets
            .iter()
            .any(|b| b.labels.get("le").map(String::as_str) == Some("+Inf") && b.value >= 3.0)
    );
    assert_eq!(
        find(
            &samples,
            "db_pool_max_connections",
            &[("pool", "hardening-test")]
        )
        .len(),
        1
    );
    assert_eq!(
        find(
            &samples,
            "db_pool_idle_connections",
            &[("pool", "hardening-test")]
        )
        .len(),
        1
    );
}
