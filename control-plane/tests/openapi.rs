//! The OpenAPI document names every route the router serves, and every operation it names
//! is served.

mod common;

use certbind_control_plane::app::route_docs;
use common::{Store, TestApp, Transport};

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let app = TestApp::start(Store::Sqlite, Transport::Oneshot, "openapi").await.expect("app");
    let doc = app.send("GET", "/api/v1/openapi.json", &[], Vec::new()).await.json();
    let paths = doc["paths"].as_object().expect("paths");

    // Every route of the router (built from the same table) is in the document.
    let routes = route_docs();
    assert!(routes.len() >= 40, "only {} routes", routes.len());
    for route in &routes {
        let method = route.method.as_str().to_ascii_lowercase();
        let op = &doc["paths"][route.path][&method];
        assert!(op.is_object(), "{} {} missing from openapi.json", route.method, route.path);
        assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()));
        for name in route.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))) {
            assert!(
                op["parameters"].as_array().unwrap().iter().any(|p| p["name"] == name && p["in"] == "path"),
                "{} {}: parameter {name} undocumented",
                route.method,
                route.path
            );
        }
    }

    // Every documented operation is routed: neither the no-route 404 nor 405.
    let mut operations = 0;
    for (path, methods) in paths {
        for (method, _) in methods.as_object().unwrap() {
            operations += 1;
            let concrete = path.replace('{', "x").replace('}', "");
            let r = app.send(&method.to_ascii_uppercase(), &concrete, &[], Vec::new()).await;
            assert_ne!(r.status, 405, "{method} {path}");
            if r.status == 404 {
                assert_ne!(r.json()["type"], "urn:certbind:problem:no-route", "{method} {path} is not routed");
            }
        }
    }
    assert_eq!(operations, routes.len());
    app.finish().await;
}
