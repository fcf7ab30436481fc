//! The OpenAPI document names every route the router serves, and every operation it names
//! is served; an operation the document says needs a credential refuses a request without one,
//! and only those do.

mod common;

use certbind_control_plane::app::{route_docs, Access};
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

    // Every documented operation is routed: neither the no-route 404 nor 405. Sent without a
    // credential, it is refused 401 with a Bearer challenge exactly when the document asks for
    // one (`security`), and the document asks exactly when the route is not public.
    let mut operations = 0;
    let mut refused = 0;
    for (path, methods) in paths {
        for (method, op) in methods.as_object().unwrap() {
            operations += 1;
            let route = routes
                .iter()
                .find(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method))
                .unwrap_or_else(|| panic!("{method} {path} is documented but not in the route table"));
            let public = route.access == Access::Public;
            assert_eq!(op.get("security").is_none(), public, "{method} {path}: security in the document");
            let concrete = path.replace('{', "x").replace('}', "");
            let r = app.send(&method.to_ascii_uppercase(), &concrete, &[], Vec::new()).await;
            assert_ne!(r.status, 405, "{method} {path}");
            if r.status == 404 {
                assert_ne!(r.json()["type"], "urn:certbind:problem:no-route", "{method} {path} is not routed");
            }
            if public {
                assert_ne!(r.status, 401, "{method} {path} is public but refused a request without a credential");
            } else {
                assert_eq!(r.status, 401, "{method} {path} needs a credential but answered {} without one", r.status);
                assert_eq!(r.json()["type"], "urn:certbind:problem:unauthorized", "{method} {path}");
                assert!(
                    r.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")),
                    "{method} {path}: no Bearer challenge"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(operations, routes.len());
    let needing = routes.iter().filter(|r| r.access != Access::Public).count();
    assert_eq!(refused, needing, "every route that needs a credential was tried");
    assert!(needing >= 40, "only {needing} routes need a credential");
    app.finish().await;
}
