//! Hostile requests, by the class of belief they attack: who the peer is, which path,
//! which XFCC element, header names in any case, look-alike identity headers, checks the
//! certificate source cannot perform, bound tokens without their certificate, and the smaller
//! things (size caps, email domains, replayed signatures, token floods). Families are generated
//! (path spellings × routes, name spellings × identity headers, element forgeries × trust
//! modes) and every request has one exact expected outcome. None may be accepted: each is
//! refused, or forwarded with the hostile part removed (`strip_expected`).

use certbind_shared::source::testing::percent_encode;
use super::fixtures::{self, cert, claims, token, TestCert, NOW};
use super::table::{standard_config, standard_identity, standard_policy};
use super::{Case, CaseRequest, Expect};
use certbind_shared::forwarded_signature::ForwardedSignatureKey;
use serde_json::{json, Value};

/// A peer inside `trusted_proxies` (`10.0.0.0/8`), as Envoy reports a TCP peer.
const TRUSTED: &str = "10.1.2.3:40000";
const STRANGER: &str = "203.0.113.9:40000";

/// Which class of belief a case attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Peer,
    Path,
    XfccElement,
    HeaderCase,
    LookAlike,
    SourceLimits,
    BoundToken,
    Credential,
    Trailer,
    Smaller,
}

/// A hostile case and the class it belongs to.
#[derive(Debug, Clone)]
pub struct Hostile {
    pub class: Class,
    pub case: Case,
}

fn deny(status: u16, reason: &'static str) -> Expect {
    Expect::Deny { status, reason, detail: certbind_shared::decision::outcome::NO_DETAIL }
}

/// 403 `certificate_not_allowed`, for the operator's `detail`.
fn not_allowed(detail: &'static str) -> Expect {
    Expect::Deny { status: 403, reason: "certificate_not_allowed", detail }
}

fn hostile(class: Class, name: String, config: Value, request: CaseRequest, expect: Expect) -> Hostile {
    Hostile { class, case: Case { name, config, request, expect, strip_expected: Vec::new() } }
}

fn config_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut policy = standard_policy();
    edit(&mut policy);
    json!({"policy": policy, "development_identity": standard_identity()})
}

/// A request to `path` through this Envoy, with `cert` on the connection (and in XFCC) and
/// `bearer` in `Authorization`.
fn request(path: &str, cert: Option<&TestCert>, bearer: Option<String>) -> CaseRequest {
    let mut headers = Vec::new();
    if let Some(c) = cert {
        headers.push(("x-forwarded-client-cert".to_string(), c.xfcc()));
    }
    if let Some(t) = bearer {
        headers.push(("authorization".to_string(), format!("Bearer {t}")));
    }
    CaseRequest {
        path: path.into(),
        headers,
        peer: STRANGER.into(),
        connection_digest: cert.map(TestCert::hex),
        now: NOW,
        ..Default::default()
    }
}

fn jane() -> &'static TestCert {
    cert("piv-auth")
}

/// The attacker's own certificate: valid, not enrolled.
fn attacker() -> &'static TestCert {
    cert("cac")
}

fn unbound_token() -> String {
    token(&claims(None))
}

/// Every hostile case, in class order.
pub fn all() -> Vec<Hostile> {
    [peer(), paths(), xfcc_elements(), header_case(), look_alikes(), source_limits(), bound_tokens(), credentials(), trailers(), smaller()]
        .concat()
}

/// Forwarded certificate sources, each with its header and Jane's value in it.
fn forwarded_sources() -> Vec<(&'static str, Value, &'static str, String)> {
    let j = jane();
    vec![
        ("xfcc", json!({"kind": "xfcc", "trust": "trusted_proxies"}), "x-forwarded-client-cert", j.xfcc()),
        ("nginx", json!({"kind": "nginx_escaped", "header": "ssl-client-cert"}), "ssl-client-cert", j.nginx_escaped()),
        ("traefik", json!({"kind": "traefik", "header": "x-forwarded-tls-client-cert"}), "x-forwarded-tls-client-cert", j.traefik()),
        ("rfc9440", json!({"kind": "rfc9440", "header": "client-cert"}), "client-cert", j.rfc9440()),
    ]
}

fn forwarded_config(source: &Value) -> Value {
    config_with(|p| {
        p["certificate_source"] = source.clone();
        p["trusted_proxies"] = json!(["10.0.0.0/8", "::ffff:192.168.0.0/112"]);
    })
}

/// Class 1: a victim's public certificate in a forwarded header, from a peer that only claims
/// to be a trusted proxy. The header is not believed: the card route has no certificate.
fn peer() -> Vec<Hostile> {
    let peers = [
        ("an address Envoy took from X-Forwarded-For (port 0)", "10.1.2.3:0"),
        ("an IPv6 address from a header (port 0)", "[::ffff:10.1.2.3]:0"),
        ("a mapped address from a header (port 0)", "[::ffff:192.168.1.1]:0"),
        ("a bare address, no port", "10.1.2.3"),
        ("a port with a sign", "10.1.2.3:+443"),
        ("a port with a leading zero", "10.1.2.3:0443"),
        ("a port out of range", "10.1.2.3:70000"),
        ("an empty address", ""),
        ("a Unix socket path", "/run/envoy.sock"),
        ("an untrusted TCP peer", STRANGER),
        ("an untrusted IPv6 peer", "[2001:db8::1]:40000"),
        ("a mapped untrusted peer", "[::ffff:203.0.113.9]:40000"),
    ];
    let mut out = Vec::new();
    for (label, source, header, value) in forwarded_sources() {
        let config = forwarded_config(&source);
        for (what, address) in peers {
            let mut request = request("/mtls/x", None, None);
            request.headers.push((header.into(), value.clone()));
            request.peer = address.into();
            out.push(hostile(
                Class::Peer,
                format!("peer: {label} header from {what} → not believed"),
                config.clone(),
                request,
                deny(401, "certificate_missing"),
            ));
        }
        // Headers naming a trusted address, from a stranger.
        for (claim, claimed) in [
            ("x-forwarded-for", "10.1.2.3"),
            ("x-real-ip", "10.1.2.3"),
            ("forwarded", "for=10.1.2.3"),
            ("x-envoy-external-address", "10.1.2.3"),
            ("true-client-ip", "10.1.2.3"),
        ] {
            let mut request = request("/mtls/x", None, None);
            request.headers.push((header.into(), value.clone()));
            request.headers.push((claim.into(), claimed.into()));
            out.push(hostile(
                Class::Peer,
                format!("peer: {label} header with {claim} naming a trusted proxy → not believed"),
                config.clone(),
                request,
                deny(401, "certificate_missing"),
            ));
        }
    }
    // Under NGINX the peer is ngx.realip_remote_addr, whatever source.address (realip) says.
    let nginx = config_with(|p| {
        p["certificate_source"] = json!({"kind": "nginx_escaped", "header": "ssl-client-cert"});
        p["trusted_proxies"] = json!(["10.0.0.0/8"]);
        p["proxy"] = json!("nginx");
    });
    for (what, realip) in [("an untrusted connection", "203.0.113.9"), ("no realip property", ""), ("an address with a port", "10.1.2.3:80")] {
        let mut request = request("/mtls/x", None, None);
        request.headers.push(("ssl-client-cert".into(), jane().nginx_escaped()));
        request.peer = "10.1.2.3".into();
        if !realip.is_empty() {
            request.properties.push(("ngx.realip_remote_addr".into(), realip.into()));
        }
        out.push(hostile(
            Class::Peer,
            format!("peer: nginx, $remote_addr rewritten to a trusted address, {what} → not believed"),
            nginx.clone(),
            request,
            deny(401, "certificate_missing"),
        ));
    }
    out
}

/// Spellings of `/{route}/x` that an upstream may resolve to it: each gets the route's mode.
fn equivalent_spellings(route: &str) -> Vec<String> {
    let mut first = route.chars();
    let head = first.next().map(|c| c.to_string()).unwrap_or_default();
    let rest: String = first.collect();
    let escaped_head = format!("%{:02X}", head.as_bytes().first().copied().unwrap_or(b'x'));
    // Every character escaped, lowercase hex (slashes of a nested route stay).
    let escaped_all: String =
        route.bytes().map(|b| if b == b'/' { "/".to_string() } else { format!("%{b:02x}") }).collect();
    vec![
        format!("//{route}/x"),
        format!("/{route}//x"),
        format!("///{route}///x"),
        format!("/{escaped_head}{rest}/x"),
        format!("/{escaped_all}/x"),
        format!("/./{route}/x"),
        format!("/{route}/./x"),
        format!("/static/../{route}/x"),
        format!("/a/b/../../{route}/x"),
        format!("/../{route}/x"),
        format!("/x/%2e%2e/{route}/x"),
        format!("/x/%2E%2E/{route}/x"),
        format!("/x/.%2e/{route}/x"),
        format!("/%2e/{route}/x"),
        format!("/{route}/x/y/.."),
        format!("/{route}/x?next=/public"),
        format!("/{route}%2f..%2f../x"),
    ]
}

/// Spellings the filter refuses, whatever route they would name.
fn refused_spellings(route: &str) -> Vec<String> {
    vec![
        format!("/{route};a/x"),
        format!("/{route}/x;jsessionid=1"),
        format!("/{route}%3Ba/x"),
        format!("/{route}%2Fx"),
        format!("/{route}%2fx"),
        format!("/{route}%5Cx"),
        format!("/{route}\\x"),
        format!("/{route}/x%00"),
        format!("/{route}/x%0A"),
        format!("/{route}/x%7F"),
        format!("/{route}/x%25"),
        format!("/%25{route}/x"),
        format!("/{route}/%C0%AE%C0%AE/x"),
        format!("/{route}/%80"),
        format!("/{route}/%E2%82"),
        format!("/{route}/x#frag"),
        format!("/{route}/%"),
        format!("/{route}/%G1"),
        format!("{route}/x"),
        format!("http://a/{route}/x"),
        format!("/{route}/x\u{1}"),
        format!("/{route} /x"),
    ]
}

/// Class 2: path spellings × routes. A bearer token alone (no certificate) must not reach a
/// card route under any spelling of it; ambiguous spellings are refused outright.
fn paths() -> Vec<Hostile> {
    let mut out = Vec::new();
    let config = standard_config();
    for route in ["mtls", "required", "enrolled", "fpki"] {
        for path in equivalent_spellings(route) {
            let expect = if path.contains("%2f") {
                deny(400, "invalid_path")
            } else {
                deny(401, "certificate_missing")
            };
            out.push(hostile(
                Class::Path,
                format!("path: {path:?} with a token and no certificate"),
                config.clone(),
                request(&path, None, Some(unbound_token())),
                expect,
            ));
        }
    }
    for route in ["mtls", "optional/bound"] {
        for path in refused_spellings(route) {
            out.push(hostile(
                Class::Path,
                format!("path: {path:?} refused"),
                config.clone(),
                request(&path, None, Some(unbound_token())),
                deny(400, "invalid_path"),
            ));
        }
    }
    // The binding path of an optional route, spelled otherwise: still binding-required.
    for path in equivalent_spellings("optional/bound").into_iter().filter(|p| !p.contains("%2f")) {
        out.push(hostile(
            Class::Path,
            format!("path: binding path {path:?} with a token and no certificate"),
            config.clone(),
            request(&path, None, Some(unbound_token())),
            deny(401, "certificate_missing"),
        ));
    }
    // Spellings many upstreams route to the route's handler — letter case, a format suffix,
    // trailing dots — reach the route's checks too, beside the default route's.
    for path in [
        "/MTLS/x",
        "/Mtls/x",
        "/mTLS/x",
        "/%4DTLS/x",
        "/MTLS/../mtls/x",
        "/ReQuIrEd/x",
        "/mtls.json",
        "/mtls.xml",
        "/MTLS.JSON",
        "/mtls./x",
        "/mtls../x",
        "/Mtls./x",
        "/required.json",
        "/required./x",
        "/Required.html",
        "/optional/bound.json",
        "/optional/bound.",
        "/optional/Bound/x",
        "/OPTIONAL/BOUND/x",
        "/optional/bound./x",
        "/fpki.tar.gz",
    ] {
        out.push(hostile(
            Class::Path,
            format!("path: folded spelling {path:?} with a token and no certificate"),
            config.clone(),
            request(path, None, Some(unbound_token())),
            deny(401, "certificate_missing"),
        ));
    }
    // An unbound card with a token bound to it passes the bearer default route, but not the
    // enrolled-card route its spellings reach.
    let own = || Some(token(&claims(Some(attacker()))));
    for path in ["/ENROLLED/x", "/Enrolled/x", "/enrolled.json", "/enrolled./x", "/ENROLLED.XML"] {
        out.push(hostile(
            Class::Path,
            format!("path: unbound card on folded spelling {path:?} of the enrolled-card route"),
            config.clone(),
            request(path, Some(attacker()), own()),
            deny(403, "card_not_enrolled"),
        ));
    }
    // A missing or repeated :path.
    let mut twice = request("/public", None, Some(unbound_token()));
    twice.headers.push((":path".into(), "/mtls/x".into()));
    out.push(hostile(Class::Path, "path: a second :path".into(), config.clone(), twice, deny(400, "invalid_path")));
    let mut spelled = request("/public", None, Some(unbound_token()));
    spelled.names_as_written = true;
    spelled.headers.push((":PATH".into(), "/mtls/x".into()));
    out.push(hostile(Class::Path, "path: a second :PATH in another case".into(), config, spelled, deny(400, "invalid_path")));
    out
}

/// An XFCC element for `cert`, as Envoy writes it, with a `By=` of our choosing.
fn element(cert: &TestCert, by: &str) -> String {
    format!("By={by};Hash={};Cert=\"{}\";Subject=\"\";URI=", cert.hex(), percent_encode(cert.pem.as_bytes()))
}

/// Class 3: the attacker presents their own certificate; the header carries Jane's element
/// too, in every place a forgery can put it. Nothing but a one-element header (or the
/// configured count) is believed, and its Hash must be the connection's.
fn xfcc_elements() -> Vec<Hostile> {
    let (victim, own) = (jane(), attacker());
    let edge = "spiffe://certbind.test/edge";
    let v = element(victim, edge);
    let a = element(own, edge);
    // Envoy writes URI= unquoted: a URI SAN holding ",…" becomes the start of another element.
    let uri_forgery = format!("{};URI=https://evil.example,{v}", a.trim_end_matches(";URI="));
    let dns_forgery = format!("{};DNS=evil.example,{v}", a.trim_end_matches(";URI="));
    let key_forgery = format!("{};URI=x;Hash={}", a.trim_end_matches(";URI="), victim.hex());
    let hashless = format!("By={edge};Cert=\"{}\"", percent_encode(victim.pem.as_bytes()));
    let certless = format!("By={edge};Hash={}", victim.hex());
    let short_hash = format!("By={edge};Hash={};Cert=\"{}\"", &victim.hex()[..62], percent_encode(victim.pem.as_bytes()));
    let colon_hash = {
        let hex = victim.hex();
        let pairs: Vec<&str> = (0..32).map(|i| &hex[i * 2..i * 2 + 2]).collect();
        format!("By={edge};Hash={};Cert=\"{}\"", pairs.join(":"), percent_encode(victim.pem.as_bytes()))
    };
    let x5t_hash = format!("By={edge};Hash={};Cert=\"{}\"", victim.x5t(), percent_encode(victim.pem.as_bytes()));
    let mismatched = format!("By={edge};Hash={};Cert=\"{}\"", victim.hex(), percent_encode(own.pem.as_bytes()));
    let forgeries: Vec<(&str, String)> = vec![
        ("the victim's element after the attacker's", format!("{a},{v}")),
        ("the victim's element before the attacker's", format!("{v},{a}")),
        ("the victim's element between two of the attacker's", format!("{a},{v},{a}")),
        ("the victim's element twice", format!("{v},{v}")),
        ("a URI SAN forging a second element", uri_forgery),
        ("a DNS SAN forging a second element", dns_forgery),
        ("a URI SAN forging a second Hash in the element", key_forgery),
        ("an element without Hash", hashless),
        ("an element without Cert", certless),
        ("a Hash of 62 digits", short_hash),
        ("a Hash in colon-separated pairs", colon_hash),
        ("a Hash spelled as x5t#S256", x5t_hash),
        ("a Hash naming the victim over the attacker's Cert", mismatched),
        ("an empty element after a comma", format!("{v},")),
        ("an empty element before a comma", format!(",{v}")),
        ("two commas", format!("{a},,{v}")),
        ("an unknown key smuggled in", format!("{v};Role=admin")),
        ("a quoted By holding a comma", format!("By=\"{edge},x\";{}", v.trim_start_matches(&format!("By={edge};")))),
    ];
    let mut out = Vec::new();
    // This Envoy: the connection presented the attacker's certificate.
    let this_proxy = standard_config();
    for (what, header) in &forgeries {
        let mut request = request("/mtls/x", Some(own), None);
        request.headers[0].1 = header.clone();
        out.push(hostile(
            Class::XfccElement,
            format!("xfcc this_proxy: {what}"),
            this_proxy.clone(),
            request,
            deny(400, "malformed_client_cert"),
        ));
    }
    // A trusted edge that writes one element, checked by By=.
    let trusted = config_with(|p| {
        p["certificate_source"] = json!({"kind": "xfcc", "trust": "trusted_proxies", "by": [edge]});
        p["trusted_proxies"] = json!(["10.0.0.0/8"]);
    });
    let mut trusted_forgeries = forgeries.clone();
    trusted_forgeries.push(("an element by another proxy", element(victim, "spiffe://certbind.test/other")));
    trusted_forgeries.push(("an element with two By values", format!("By=spiffe://x;{v}")));
    for (what, header) in &trusted_forgeries {
        let mut request = request("/mtls/x", None, None);
        request.headers.push(("x-forwarded-client-cert".into(), header.clone()));
        request.peer = TRUSTED.into();
        // A Hash naming the victim over the attacker's Cert differs only in Cert.
        out.push(hostile(
            Class::XfccElement,
            format!("xfcc trusted_proxies: {what}"),
            trusted.clone(),
            request,
            deny(400, "malformed_client_cert"),
        ));
    }
    // Two XFCC headers in two spellings (NGINX passes them apart; Envoy would join them).
    for (first, second) in [("x-forwarded-client-cert", "X-Forwarded-Client-Cert"), ("x-forwarded-client-cert", "x_forwarded_client_cert")] {
        let mut request = request("/mtls/x", None, None);
        request.names_as_written = true;
        request.headers.push((first.into(), a.clone()));
        request.headers.push((second.into(), v.clone()));
        request.peer = TRUSTED.into();
        out.push(hostile(
            Class::XfccElement,
            format!("xfcc: {first} and {second} both sent"),
            trusted.clone(),
            request,
            deny(400, "malformed_client_cert"),
        ));
    }
    // The configured count is exact both ways.
    let two_hops = config_with(|p| {
        p["certificate_source"] = json!({"kind": "xfcc", "trust": "trusted_proxies", "elements": 2});
        p["trusted_proxies"] = json!(["10.0.0.0/8"]);
    });
    for (what, header) in [("one element where two are written", v.clone()), ("three where two are written", format!("{v},{a},{a}"))] {
        let mut request = request("/mtls/x", None, None);
        request.headers.push(("x-forwarded-client-cert".into(), header));
        request.peer = TRUSTED.into();
        out.push(hostile(Class::XfccElement, format!("xfcc: {what}"), two_hops.clone(), request, deny(400, "malformed_client_cert")));
    }
    out
}

/// Name spellings of `name`: as NGINX may pass them.
fn spellings(name: &str) -> Vec<String> {
    let title: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-");
    let mixed: String =
        name.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect();
    vec![name.to_ascii_uppercase(), title.clone(), mixed, name.replace('-', "_"), title.replace('-', "_")]
}

/// Identity headers a client must never get through.
const IDENTITY_HEADERS: &[&str] = &[
    "x-dm-user-id",
    "x-dm-org-id",
    "x-dm-principal",
    "x-dm-smartcard-fingerprint",
    "x-dm-smartcard-subject",
    "x-dm-smartcard-issuer",
    "x-dm-token-subject",
    "x-dm-token-issuer",
    "x-dm-token-owner",
    "x-forwarded-client-cert",
    "ssl-client-cert",
    "client-cert",
];

/// Class 4: identity headers in every case (NGINX passes names as written) on a bearer route
/// with a valid token: forwarded, with none of them.
fn header_case() -> Vec<Hostile> {
    let mut out = Vec::new();
    let config = standard_config();
    for name in IDENTITY_HEADERS {
        for spelled in spellings(name) {
            let mut request = request("/public", None, Some(unbound_token()));
            request.names_as_written = true;
            request.headers.push((spelled.clone(), "u-admin".into()));
            let mut case = hostile(
                Class::HeaderCase,
                format!("header case: {spelled} on a bearer route is removed"),
                config.clone(),
                request,
                Expect::Allow(vec![("x-dm-token-subject", Some("jane.doe".into()))]),
            );
            case.case.strip_expected = vec![spelled];
            out.push(case);
        }
    }
    // The certificate and token headers in another case count as duplicates.
    let nginx = config_with(|p| {
        p["certificate_source"] = json!({"kind": "nginx_escaped", "header": "ssl-client-cert"});
        p["trusted_proxies"] = json!(["10.0.0.0/8"]);
    });
    for second in ["SSL-Client-Cert", "ssl_client_cert", "SSL_CLIENT_CERT"] {
        let mut request = request("/mtls/x", None, None);
        request.names_as_written = true;
        request.peer = TRUSTED.into();
        request.headers.push(("ssl-client-cert".into(), attacker().nginx_escaped()));
        request.headers.push((second.into(), jane().nginx_escaped()));
        out.push(hostile(
            Class::HeaderCase,
            format!("header case: ssl-client-cert and {second}"),
            nginx.clone(),
            request,
            deny(400, "malformed_client_cert"),
        ));
    }
    for second in ["Authorization", "AUTHORIZATION"] {
        let mut request = request("/public", None, Some(unbound_token()));
        request.names_as_written = true;
        request.headers.push((second.into(), format!("Bearer {}", token(&claims(Some(jane()))))));
        out.push(hostile(
            Class::HeaderCase,
            format!("header case: authorization and {second}"),
            config.clone(),
            request,
            deny(401, "invalid_token"),
        ));
    }
    out
}

/// Class 5: other proxies' certificate headers and underscore spellings, stripped by default
/// and by the operator's list.
fn look_alikes() -> Vec<Hostile> {
    let names = [
        "x_dm_user_id",
        "x_dm_principal",
        "X_DM_Org_Id",
        "x-ssl-client-cert",
        "X-SSL-Client-S-DN",
        "x-ssl-client-verify",
        "x-ssl-cert",
        "X-SSL-Subject",
        "x-client-cert",
        "X-Client-Certificate",
        "x-client-cert-chain",
        "x-client-verify",
        "x-client-dn",
        "x-client-s-dn",
        "x-client-i-dn",
        "ssl-client-s-dn",
        "ssl-client-i-dn",
        "ssl-client-verify",
        "SSL_CLIENT_CERT",
        "ssl-client-escaped-cert",
        "x-forwarded-tls-client-cert",
        "x-forwarded-tls-client-cert-info",
        "x-forwarded-client-cert-chain",
        "client-cert-chain",
        "x-amzn-mtls-clientcert",
        "x-amzn-mtls-clientcert-leaf",
        "X-ARR-ClientCert",
        "x-tls-client-cert",
        "x-client-ssl-cert",
        "xfcc",
    ];
    let mut out = Vec::new();
    let config = standard_config();
    for name in names {
        let mut request = request("/public", None, Some(unbound_token()));
        request.names_as_written = true;
        request.headers.push((name.into(), jane().nginx_escaped()));
        let mut case = hostile(
            Class::LookAlike,
            format!("look-alike: {name} is removed"),
            config.clone(),
            request,
            Expect::Allow(vec![("x-dm-token-subject", Some("jane.doe".into()))]),
        );
        case.case.strip_expected = vec![name.into()];
        out.push(case);
    }
    // Headers that make an upstream serve another URL than the one judged.
    for name in [
        "X-Original-URL",
        "x-original-uri",
        "X_Original_URL",
        "X-Rewrite-URL",
        "x-forwarded-uri",
        "X-Forwarded-Url",
        "X-Forwarded-Prefix",
        "x_forwarded_prefix",
        "X-Forwarded-Path",
        "x-original-path",
        "x-envoy-original-path",
    ] {
        let mut request = request("/public", None, Some(unbound_token()));
        request.names_as_written = true;
        request.headers.push((name.into(), "/mtls/x".into()));
        let mut case = hostile(
            Class::LookAlike,
            format!("url override: {name} is removed"),
            config.clone(),
            request,
            Expect::Allow(vec![("x-dm-token-subject", Some("jane.doe".into()))]),
        );
        case.case.strip_expected = vec![name.into()];
        out.push(case);
    }
    let extended = config_with(|p| p["strip_headers"] = json!(["x-remote-user", "x-auth-request-*"]));
    for name in ["x-remote-user", "X_Remote_User", "x-auth-request-email", "X-Auth-Request-User"] {
        let mut request = request("/public", None, Some(unbound_token()));
        request.names_as_written = true;
        request.headers.push((name.into(), "admin@example.mil".into()));
        let mut case = hostile(
            Class::LookAlike,
            format!("look-alike: {name} removed by strip_headers"),
            extended.clone(),
            request,
            Expect::Allow(vec![("x-dm-token-subject", Some("jane.doe".into()))]),
        );
        case.case.strip_expected = vec![name.into()];
        out.push(case);
    }
    out
}

/// Class 6: the connection source without the certificate's whole DER can check nothing
/// beyond the digest: every check that needs more refuses.
fn source_limits() -> Vec<Hostile> {
    let connection = config_with(|p| p["certificate_source"] = json!({"kind": "connection"}));
    let partial = |path: &str, cert: &TestCert| CaseRequest {
        path: path.into(),
        peer: STRANGER.into(),
        connection_digest: Some(cert.hex()),
        now: NOW,
        ..Default::default()
    };
    let mut out = Vec::new();
    for (what, path, cert) in [
        ("the Card Authentication refusal", "/mtls/x", jane()),
        ("a Card Authentication certificate", "/mtls/x", cert("piv-card-auth")),
        ("an email domain", "/army-mail/x", jane()),
        ("an allowed issuer", "/other-issuer/x", jane()),
        ("a policy OID", "/fpki/x", jane()),
        ("a policy OID on an enrolled-card route", "/enrolled/x", cert("piv-auth-test-arc")),
    ] {
        out.push(hostile(
            Class::SourceLimits,
            format!("connection source without the certificate: {what} → refused"),
            connection.clone(),
            partial(path, cert),
            not_allowed("facts_unavailable"),
        ));
    }
    // With the certificate, the checks run — and the certificate must be the digest's.
    for (what, path, cert, expect) in [
        ("a Card Authentication certificate", "/mtls/x", cert("piv-card-auth"), not_allowed("card_authentication")),
        ("no email SAN where a domain is required", "/army-mail/x", cert("cac"), not_allowed("san_domain")),
        ("an email SAN outside the domains", "/army-mail/x", jane(), not_allowed("san_domain")),
        ("the test arc where production is required", "/fpki/x", cert("piv-auth-test-arc"), not_allowed("policy_oid_missing")),
    ] {
        let mut request = partial(path, cert);
        request.connection_certificate = Some(cert.pem.clone());
        out.push(hostile(Class::SourceLimits, format!("connection source: {what}"), connection.clone(), request, expect));
    }
    // (A digest no other case of this configuration presents: once a digest's facts are
    // cached, the property is not read again — the digest alone names the certificate.)
    let mut swapped = partial("/mtls/x", cert("piv-auth-2"));
    swapped.connection_certificate = Some(jane().pem.clone());
    out.push(hostile(
        Class::SourceLimits,
        "connection source: a certificate that is not the digest's".into(),
        connection.clone(),
        swapped,
        deny(400, "malformed_client_cert"),
    ));
    // Forwarded headers mean nothing to the connection source.
    let mut forwarded = partial("/mtls/x", jane());
    forwarded.connection_digest = None;
    forwarded.headers.push(("x-forwarded-client-cert".into(), jane().xfcc()));
    out.push(hostile(
        Class::SourceLimits,
        "connection source: an XFCC header without a TLS certificate".into(),
        connection,
        forwarded,
        deny(401, "certificate_missing"),
    ));
    out
}

/// Class 7: a token bound to Jane's certificate, presented without it or with another one.
fn bound_tokens() -> Vec<Hostile> {
    let config = standard_config();
    let bound = || Some(token(&claims(Some(jane()))));
    let mut out = Vec::new();
    for (what, path) in [
        ("a bearer route", "/public"),
        ("an optional route outside the sender-binding paths", "/optional/open"),
        ("an optional binding path", "/optional/bound/x"),
        ("a required route", "/required/x"),
    ] {
        out.push(hostile(
            Class::BoundToken,
            format!("bound token without its certificate on {what}"),
            config.clone(),
            request(path, None, bound()),
            deny(401, "certificate_missing"),
        ));
        out.push(hostile(
            Class::BoundToken,
            format!("bound token with another certificate on {what}"),
            config.clone(),
            request(path, Some(attacker()), bound()),
            deny(401, "sender_binding_mismatch"),
        ));
        // Jane's certificate in the header, but not on this connection.
        let mut replayed = request(path, Some(jane()), bound());
        replayed.connection_digest = None;
        out.push(hostile(
            Class::BoundToken,
            format!("bound token with the certificate only in a header on {what}"),
            config.clone(),
            replayed,
            deny(401, "certificate_missing"),
        ));
    }
    // A bound token whose certificate is blocklisted, on a bearer route.
    let blocked = cert("untrusted-user");
    out.push(hostile(
        Class::BoundToken,
        "bound token with its blocklisted certificate on a bearer route".into(),
        config,
        request("/public", Some(blocked), Some(token(&claims(Some(blocked))))),
        deny(401, "certificate_blocklisted"),
    ));
    out
}

/// Class 8: credentials the filter does not read, on every mode's route. The token is bound to
/// the attacker's card and rides beside Jane's, which would pass an `mtls` route if the filter
/// ignored a spelling an upstream library accepts: every one is refused `invalid_token`.
fn credentials() -> Vec<Hostile> {
    let config = standard_config();
    let stolen = token(&claims(Some(attacker())));
    let other = unbound_token();
    let spellings: Vec<(&str, Vec<String>)> = vec![
        ("two spaces", vec![format!("Bearer  {stolen}")]),
        ("a tab", vec![format!("Bearer\t{stolen}")]),
        ("a trailing space", vec![format!("Bearer {stolen} ")]),
        ("a trailing comma", vec![format!("Bearer {stolen},")]),
        ("a JWT scheme", vec![format!("JWT {stolen}")]),
        ("a Token scheme", vec![format!("Token {stolen}")]),
        ("the bare token", vec![stolen.clone()]),
        ("two credentials joined", vec![format!("Bearer {other}, Bearer {stolen}")]),
        ("two credentials joined without a space", vec![format!("Bearer {other},Bearer {stolen}")]),
        ("two Authorization headers", vec![format!("Bearer {other}"), format!("Bearer {stolen}")]),
        ("a Basic credential", vec!["Basic YWRtaW46YWRtaW4=".into()]),
        ("an empty value", vec![String::new()]),
    ];
    let queries = ["access_token", "ACCESS_TOKEN", "accessToken", "access-token", "%61ccess_token", "access_token[]"];
    let mut out = Vec::new();
    for (what, path, card) in [
        ("an mtls route", "/mtls/x", Some(jane())),
        ("an enrolled-card route", "/enrolled/x", Some(jane())),
        ("a bearer route", "/public", None),
        ("an optional route", "/optional/open", Some(jane())),
        ("a required route", "/required/x", Some(jane())),
    ] {
        for (spelling, values) in &spellings {
            let mut request = request(path, card, None);
            request.headers.extend(values.iter().map(|v| ("authorization".to_string(), v.clone())));
            out.push(hostile(
                Class::Credential,
                format!("credential: {spelling} on {what}"),
                config.clone(),
                request,
                deny(401, "invalid_token"),
            ));
        }
        for name in queries {
            // Beside a well-formed header the route accepts, and alone.
            let good = (path != "/mtls/x" && path != "/enrolled/x").then(|| token(&claims(card)));
            for bearer in [good.clone(), None].into_iter().skip(usize::from(good.is_none())) {
                let with_header = if bearer.is_some() { "beside a good Authorization" } else { "alone" };
                out.push(hostile(
                    Class::Credential,
                    format!("credential: ?{name}= {with_header} on {what}"),
                    config.clone(),
                    request(&format!("{path}?{name}={stolen}"), card, bearer),
                    deny(401, "invalid_token"),
                ));
            }
        }
    }
    // The operator's own carriers.
    let listed = config_with(|p| {
        p["credential_carriers"] = json!({"query_parameters": ["token"], "headers": ["x-access-token"], "cookies": ["session_token"]})
    });
    for (what, edit) in [
        ("a listed query parameter", Box::new(|r: &mut CaseRequest| r.path.push_str("?Token=abc")) as Box<dyn Fn(&mut CaseRequest)>),
        ("a listed header", Box::new(|r: &mut CaseRequest| r.headers.push(("x-access-token".into(), "abc".into())))),
        ("a listed header in another spelling", Box::new(|r: &mut CaseRequest| {
            r.names_as_written = true;
            r.headers.push(("X_Access_Token".into(), "abc".into()));
        })),
        ("a listed cookie", Box::new(|r: &mut CaseRequest| r.headers.push(("cookie".into(), "theme=dark; session_token=abc".into())))),
        ("a listed cookie in another spelling", Box::new(|r: &mut CaseRequest| r.headers.push(("cookie".into(), "SessionToken=abc".into())))),
    ] {
        let mut request = request("/mtls/x", Some(jane()), None);
        edit(&mut request);
        out.push(hostile(Class::Credential, format!("credential: {what} on an mtls route"), listed.clone(), request, deny(401, "invalid_token")));
    }
    out
}

/// Request trailers (HTTP/2, gRPC metadata) naming an identity or carrying a credential,
/// after headers the filter let through: each is removed, and an ordinary trailer beside it
/// reaches the upstream unchanged.
fn trailers() -> Vec<Hostile> {
    let config = standard_config();
    let stolen = token(&claims(Some(attacker())));
    let hostile_trailers: Vec<(&str, String)> = vec![
        ("x-dm-user-id", "u-admin".into()),
        ("x-dm-org-id", "o-navy".into()),
        ("X-DM-Principal", "auth:account:user:root".into()),
        ("x_dm_user_id", "u-admin".into()),
        ("x-dm-smartcard-fingerprint", jane().hex()),
        ("x-forwarded-client-cert", jane().xfcc()),
        ("ssl-client-cert", jane().nginx_escaped()),
        ("AUTHORIZATION", format!("Bearer {stolen}")),
        ("Authorization", stolen.clone()),
        ("cookie", "session=abc".into()),
        ("x-original-url", "/admin".into()),
        ("x-forwarded-prefix", "/admin".into()),
    ];
    let mut out = Vec::new();
    for (what, path, card, bearer, expect) in [
        ("an mtls route", "/mtls/x", Some(jane()), None, ("x-dm-user-id", "u-jane")),
        ("a bearer route", "/public", None, Some(unbound_token()), ("x-dm-token-subject", "jane.doe")),
    ] {
        for (name, value) in &hostile_trailers {
            let mut request = request(path, card, bearer.clone());
            request.names_as_written = true;
            request.trailers = vec![("x-checksum".into(), "sha256=abc".into()), ((*name).into(), value.clone())];
            let mut case = hostile(
                Class::Trailer,
                format!("trailer: {name} on {what} is removed"),
                config.clone(),
                request,
                Expect::Allow(vec![(expect.0, Some(expect.1.into()))]),
            );
            case.case.strip_expected = vec![(*name).into()];
            out.push(case);
        }
    }
    out
}

/// Class 9: size caps, signatures, tokens, constraints.
fn smaller() -> Vec<Hostile> {
    let mut out = Vec::new();
    // The configured cap is the one every parser applies, below and above the default.
    for (cap, pad) in [(4096usize, 100usize), (8192, 5000), (65536, 40000)] {
        let config = config_with(|p| p["max_header_bytes"] = json!(cap));
        let mut request = request("/mtls/x", Some(jane()), None);
        request.headers[0].1 = format!("{};DNS={}", jane().xfcc(), "a".repeat(pad.max(cap)));
        out.push(hostile(
            Class::Smaller,
            format!("an XFCC header over a {cap}-byte cap"),
            config,
            request,
            deny(400, "malformed_client_cert"),
        ));
    }
    // Replayed and forged forwarded signatures.
    let secret = [7u8; 32];
    let key = ForwardedSignatureKey::new(&secret).unwrap_or_else(|e| panic!("{e}"));
    let signed = config_with(|p| {
        p["certificate_source"] = json!({"kind": "nginx_escaped", "header": "ssl-client-cert"});
        p["trusted_proxies"] = json!(["10.0.0.0/8"]);
        p["forwarded_signature"] = json!({"header": "ssl-client-cert-signature",
            "secret_base64": certbind_shared::encoding::base64_encode(&secret), "max_age_seconds": 30});
    });
    let value = jane().nginx_escaped();
    let mac_only = key.sign(value.as_bytes(), NOW).split_once(",sha256=").map(|(_, m)| m.to_string()).unwrap_or_default();
    for (what, signature) in [
        ("replayed after the window", key.sign(value.as_bytes(), NOW - 31)),
        ("from the future", key.sign(value.as_bytes(), NOW + 31)),
        ("a day old", key.sign(value.as_bytes(), NOW - 86_400)),
        ("without its timestamp", format!("sha256={mac_only}")),
        ("with the timestamp moved", format!("t={},sha256={mac_only}", NOW + 1)),
        ("over another certificate", key.sign(attacker().nginx_escaped().as_bytes(), NOW)),
    ] {
        let request = CaseRequest {
            path: "/mtls/x".into(),
            headers: vec![("ssl-client-cert".into(), value.clone()), ("ssl-client-cert-signature".into(), signature)],
            peer: TRUSTED.into(),
            now: NOW,
            ..Default::default()
        };
        out.push(hostile(Class::Smaller, format!("forwarded signature {what}"), signed.clone(), request, deny(400, "malformed_client_cert")));
    }
    // Tokens: a flood of distinct bad ones, and one replayed.
    let config = standard_config();
    for n in 0..8 {
        let mut claims = claims(Some(jane()));
        claims["jti"] = json!(format!("flood-{n}"));
        let forged = fixtures::sign_es256(&fixtures::impostor_key(), &fixtures::es256_header(), &claims);
        out.push(hostile(
            Class::Smaller,
            format!("token flood: distinct forged token {n}"),
            config.clone(),
            request("/required/x", Some(jane()), Some(forged)),
            deny(401, "invalid_token"),
        ));
    }
    let kidless = fixtures::sign_es256(&fixtures::impostor_key(), &json!({"alg": "ES256", "typ": "JWT"}), &claims(Some(jane())));
    for attempt in 0..3 {
        out.push(hostile(
            Class::Smaller,
            format!("token flood: the same forged kid-less token, attempt {attempt}"),
            config.clone(),
            request("/required/x", Some(jane()), Some(kidless.clone())),
            deny(401, "invalid_token"),
        ));
    }
    // Beyond the leeway.
    let mut late = claims(Some(jane()));
    late["exp"] = json!(NOW - 61);
    out.push(hostile(
        Class::Smaller,
        "token expired just past the leeway".into(),
        config.clone(),
        request("/required/x", Some(jane()), Some(token(&late))),
        deny(401, "invalid_token"),
    ));
    // A Card Authentication certificate on a route that did not opt in, and an email-domain
    // route for a certificate without an email SAN.
    out.push(hostile(
        Class::Smaller,
        "card authentication certificate on a PIN route".into(),
        config.clone(),
        request("/mtls/x", Some(cert("piv-card-auth")), None),
        not_allowed("card_authentication"),
    ));
    out.push(hostile(
        Class::Smaller,
        "no email SAN on an email-domain route".into(),
        config,
        request("/army-mail/x", Some(cert("cac")), None),
        not_allowed("san_domain"),
    ));
    out
}
