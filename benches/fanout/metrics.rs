//! Request counts taken from the API server's own `/metrics` (`apiserver_request_total`): writes,
//! and reads (GET, LIST, WATCH) to see what else a phase asked of the API server.
//!
//! Counting on the server side, not in the controller, means nothing the controller forgets to
//! count escapes the figure.

use std::collections::BTreeMap;

use kube::Client;

/// Requests per `resource[/subresource]` (writes, or reads), summed over verbs and response codes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requests(pub BTreeMap<String, u64>);

const WRITE_VERBS: &[&str] = &[
    "POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE",
];
const READ_VERBS: &[&str] = &["GET", "LIST", "WATCH"];

impl Requests {
    /// `after - before`, dropping resources that did not move.
    pub fn since(&self, before: &Requests) -> Requests {
        let mut out = BTreeMap::new();
        for (resource, count) in &self.0 {
            let delta = count.saturating_sub(before.0.get(resource).copied().unwrap_or(0));
            if delta > 0 {
                out.insert(resource.clone(), delta);
            }
        }
        Requests(out)
    }

    pub fn get(&self, resource: &str) -> u64 {
        self.0.get(resource).copied().unwrap_or(0)
    }

    /// `secrets 1000, serviceaccounts 1000, acrregistrybindings/status 3`
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(r, c)| format!("{r} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Parses the Prometheus text format for `apiserver_request_total` write verbs.
pub fn parse_writes(text: &str) -> Requests {
    parse_requests(text, WRITE_VERBS)
}

/// Parses `apiserver_request_total` for `verbs`.
fn parse_requests(text: &str, verbs: &[&str]) -> Requests {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let labels = parse_labels(labels);
        let verb = labels.get("verb").map(String::as_str).unwrap_or("");
        if !verbs.contains(&verb) {
            continue;
        }
        let resource = labels.get("resource").cloned().unwrap_or_default();
        let key = match labels.get("subresource").map(String::as_str) {
            Some(sub) if !sub.is_empty() => format!("{resource}/{sub}"),
            _ => resource,
        };
        let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *out.entry(key).or_insert(0) += count;
    }
    Requests(out)
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    while let Some((name, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        labels.insert(
            name.trim_start_matches(',').to_string(),
            after[..end].to_string(),
        );
        rest = &after[end + 1..];
    }
    labels
}

/// Reads the current write counters from the API server.
pub async fn scrape(client: &Client) -> Result<Requests, kube::Error> {
    Ok(parse_writes(&metrics_text(client).await?))
}

/// Reads the current read (GET, LIST, WATCH) counters from the API server.
pub async fn scrape_reads(client: &Client) -> Result<Requests, kube::Error> {
    Ok(parse_requests(&metrics_text(client).await?, READ_VERBS))
}

async fn metrics_text(client: &Client) -> Result<String, kube::Error> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(kube::Error::HttpError)?;
    client.request_text(request).await
}
