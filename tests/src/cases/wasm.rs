//! Runs a case through the compiled filter `.wasm` under the wasmtime host. One VM per distinct
//! configuration, reused across the cases that share it, as a proxy reuses one VM per worker.

use super::{Case, CaseRequest, Observed};
use crate::host::{FilterHost, HttpRequest};
use std::collections::HashMap;

/// Configured VMs keyed by their configuration text.
#[derive(Default)]
pub struct WasmRunner {
    hosts: HashMap<String, FilterHost>,
}

/// Converts a case's request to what the proxy hands the filter.
pub fn http_request(request: &CaseRequest) -> HttpRequest {
    let mut http = HttpRequest::get(&request.path).source_address(&request.peer).names_as_written(request.names_as_written);
    for (name, value) in &request.headers {
        http = http.header(name, value);
    }
    if let Some(digest) = &request.connection_digest {
        http = http.property_str("connection.sha256_peer_certificate_digest", digest);
    }
    if let Some(pem) = &request.connection_certificate {
        http = http.property_str("connection.peer_certificate", pem);
    }
    for (path, value) in &request.properties {
        http = http.property_str(path, value);
    }
    for (name, value) in &request.trailers {
        http = http.trailer(name, value);
    }
    http
}

impl WasmRunner {
    /// The VM configured with `config`, created on first use.
    pub fn host(&mut self, config: &str) -> Result<&mut FilterHost, String> {
        if !self.hosts.contains_key(config) {
            let mut host = FilterHost::load_filter().map_err(|e| format!("loading the filter: {e:#}"))?;
            let accepted = host.configure(config.as_bytes()).map_err(|e| format!("configuring: {e:#}"))?;
            if !accepted {
                return Err(format!("configuration refused: {:?}", host.take_logs()));
            }
            self.hosts.insert(config.to_owned(), host);
        }
        self.hosts.get_mut(config).ok_or_else(|| "host vanished".to_owned())
    }

    /// Runs one case; besides what the filter did, returns the value of the counter the
    /// outcome should have incremented, before and after.
    pub fn run(&mut self, case: &Case) -> Result<(Observed, String, i64, i64), String> {
        let host = self.host(&case.config.to_string())?;
        let counter = match &case.expect {
            super::Expect::Allow(_) => "certbind.requests.allowed".to_owned(),
            super::Expect::Deny { reason, .. } => format!("certbind.requests.denied.{reason}"),
        };
        let before = host.metric(&counter).unwrap_or(0);
        let values_before = host.metrics();
        let _ = host.take_logs();
        let nanos = u64::try_from(case.request.now).map_err(|_| "negative time".to_owned())? * 1_000_000_000;
        host.set_time_nanos(nanos);
        let result = host.request(&http_request(&case.request)).map_err(|e| format!("request failed: {e:#}"))?;
        let after = host.metric(&counter).unwrap_or(0);
        // The counters this request moved.
        let moved: Vec<String> = host
            .metrics()
            .into_iter()
            .filter(|m| values_before.iter().find(|b| b.name == m.name).map_or(m.value > 0, |b| m.value > b.value))
            .map(|m| m.name)
            .collect();
        let observed = Observed {
            local_response: result.local_response.map(|r| (u16::try_from(r.status).unwrap_or(0), r.headers, r.body)),
            forwarded: result.request_headers.into_iter().map(|(n, v)| (n, v.into_bytes())).collect(),
            forwarded_trailers: result.request_trailers.into_iter().map(|(n, v)| (n, v.into_bytes())).collect(),
            denied_counted: Some(super::denied_of(moved.iter().map(String::as_str))),
            logs: Some(host.take_logs().into_iter().map(|(_, line)| line).collect()),
        };
        Ok((observed, counter, before, after))
    }

    /// Runs each case through the `.wasm` against its expectation: its counter must move by
    /// one and its decision be the native run's. One line per failure, naming the case.
    pub fn failures<'a>(&mut self, cases: impl IntoIterator<Item = &'a Case>) -> Vec<String> {
        let mut failures = Vec::new();
        for case in cases {
            let outcome = self.run(case).and_then(|(seen, counter, before, after)| {
                super::check(case, &seen)?;
                if after != before + 1 {
                    return Err(format!("counter {counter} went from {before} to {after}"));
                }
                super::same_decision(("native", &super::native::run(case)?), ("wasm", &seen))
            });
            if let Err(e) = outcome {
                failures.push(format!("{}: {e}", case.name));
            }
        }
        failures
    }
}
