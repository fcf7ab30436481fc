//! Runs a case natively: the filter's own request path (`certbind_filter::http`) over a host
//! double that records what the filter did.

use super::{Case, CaseRequest, LocalResponse, Observed};
use certbind_filter::host::{HeaderBlock, Host, HostError};
use certbind_filter::metrics::Metrics;
use certbind_filter::{config, http};
use certbind_shared::identity::IdentityData;
use std::cell::RefCell;

/// Headers as the double holds them: names and values, in order.
pub type Headers = Vec<(String, Vec<u8>)>;

/// A host double: serves one request and records the filter's answer.
pub struct RecordingHost {
    pub headers: Headers,
    pub trailers: Headers,
    pub properties: Vec<(Vec<String>, Vec<u8>)>,
    pub now: i64,
    pub response: RefCell<Option<LocalResponse>>,
    pub forwarded: RefCell<Option<Headers>>,
    pub forwarded_trailers: RefCell<Option<Headers>>,
    pub counters: RefCell<Vec<u32>>,
    pub logs: RefCell<Vec<String>>,
    pub calls: RefCell<u32>,
}

impl RecordingHost {
    pub fn new(request: &CaseRequest) -> Self {
        let mut headers: Headers = vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), request.path.clone().into_bytes()),
            (":authority".into(), b"api.certbind.test".to_vec()),
        ];
        // Envoy lowercases names; NGINX passes them as written.
        let name = |n: &String| if request.names_as_written { n.clone() } else { n.to_ascii_lowercase() };
        headers.extend(request.headers.iter().map(|(n, v)| (name(n), v.clone().into_bytes())));
        let path = |dotted: &str| dotted.split('.').map(str::to_string).collect::<Vec<_>>();
        let mut properties = vec![(path("source.address"), request.peer.clone().into_bytes())];
        if let Some(digest) = &request.connection_digest {
            properties.push((path("connection.sha256_peer_certificate_digest"), digest.clone().into_bytes()));
        }
        if let Some(pem) = &request.connection_certificate {
            properties.push((path("connection.peer_certificate"), pem.clone().into_bytes()));
        }
        for (dotted, value) in &request.properties {
            properties.push((path(dotted), value.clone().into_bytes()));
        }
        let trailers = request.trailers.iter().map(|(n, v)| (name(n), v.clone().into_bytes())).collect();
        RecordingHost {
            headers,
            trailers,
            properties,
            now: request.now,
            response: RefCell::new(None),
            forwarded: RefCell::new(None),
            forwarded_trailers: RefCell::new(None),
            counters: RefCell::new(Vec::new()),
            logs: RefCell::new(Vec::new()),
            calls: RefCell::new(0),
        }
    }

    fn count(&self) {
        *self.calls.borrow_mut() += 1;
    }
}

impl Host for RecordingHost {
    fn request_headers(&self) -> Result<HeaderBlock<'_>, HostError> {
        self.count();
        HeaderBlock::from_pairs(&self.headers)
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        self.count();
        let mut forwarded = self.forwarded.borrow_mut();
        forwarded.get_or_insert_with(|| self.headers.clone()).retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        Ok(())
    }

    fn add_request_header(&self, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.count();
        let mut forwarded = self.forwarded.borrow_mut();
        forwarded.get_or_insert_with(|| self.headers.clone()).push((name.to_string(), value.to_vec()));
        Ok(())
    }

    fn request_trailers(&self) -> Result<HeaderBlock<'_>, HostError> {
        self.count();
        HeaderBlock::from_pairs(&self.trailers)
    }

    fn remove_request_trailer(&self, name: &str) -> Result<(), HostError> {
        self.count();
        let mut forwarded = self.forwarded_trailers.borrow_mut();
        forwarded.get_or_insert_with(|| self.trailers.clone()).retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        Ok(())
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.count();
        self.properties.iter().find(|(p, _)| p.iter().map(String::as_str).eq(path.iter().copied())).map(|(_, v)| v.clone())
    }

    fn now(&self) -> i64 {
        self.count();
        self.now
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
        self.count();
        let status = u16::try_from(status).map_err(|_| HostError("status out of range".into()))?;
        let headers = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        *self.response.borrow_mut() = Some((status, headers, body.to_vec()));
        Ok(())
    }

    fn increment_counter(&self, metric_id: u32) {
        self.count();
        self.counters.borrow_mut().push(metric_id);
    }

    fn log_warn(&self, message: &str) {
        self.logs.borrow_mut().push(message.to_owned());
    }

    fn log_info(&self, message: &str) {
        self.logs.borrow_mut().push(message.to_owned());
    }
}

/// A configured filter, natively: engine, identity data and counters.
pub struct NativeFilter {
    configured: config::Configured,
    metrics: Metrics,
    /// The counters' names, by id less one.
    counter_names: Vec<String>,
}

impl NativeFilter {
    pub fn new(config_json: &[u8]) -> Result<Self, String> {
        let configured = config::parse(config_json).map_err(|e| e.to_string())?;
        let mut counter_names = Vec::new();
        let metrics = Metrics::define(|name| {
            counter_names.push(name.to_owned());
            u32::try_from(counter_names.len()).ok()
        });
        Ok(NativeFilter { configured, metrics, counter_names })
    }

    /// The decision engine, for its caches' counters.
    pub fn engine(&self) -> &certbind_shared::decision::Engine {
        &self.configured.engine
    }

    pub fn run(&mut self, request: &CaseRequest) -> (Observed, RecordingHost) {
        let host = RecordingHost::new(request);
        let identity = match &self.configured.identity {
            config::IdentitySource::Development(data) => Some(data as &dyn IdentityData),
            config::IdentitySource::Snapshot(_) => None,
        };
        let verdict =
            http::on_request_headers(&host, &mut self.configured.engine, &http::FixedIdentity(identity), &self.metrics);
        // A proxy hands trailers on only after headers that went on.
        if verdict == http::Verdict::Continue && !host.trailers.is_empty() {
            http::on_request_trailers(&host, &self.configured.engine, &self.metrics);
        }
        let observed = Observed {
            local_response: host.response.borrow().clone(),
            forwarded: host.forwarded.borrow().clone().unwrap_or_else(|| host.headers.clone()),
            forwarded_trailers: host.forwarded_trailers.borrow().clone().unwrap_or_else(|| host.trailers.clone()),
            denied_counted: Some(super::denied_of(host.counters.borrow().iter().filter_map(|id| {
                usize::try_from(*id).ok().and_then(|id| self.counter_names.get(id.checked_sub(1)?)).map(String::as_str)
            }))),
            logs: Some(host.logs.borrow().clone()),
        };
        (observed, host)
    }
}

pub fn run(case: &Case) -> Result<Observed, String> {
    let mut filter = NativeFilter::new(case.config.to_string().as_bytes())?;
    Ok(filter.run(&case.request).0)
}

/// Runs each case natively against its expectation: one line per failure, naming the case.
pub fn failures<'a>(cases: impl IntoIterator<Item = &'a Case>) -> Vec<String> {
    cases
        .into_iter()
        .filter_map(|case| run(case).and_then(|seen| super::check(case, &seen)).err().map(|e| format!("{}: {e}", case.name)))
        .collect()
}
