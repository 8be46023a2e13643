//! The document against the router's own table (its match arms, read from the
//! source) and against itself. The e2e test `openapi` probes a running engine.

use std::collections::BTreeSet;

use serde_json::Value;

use super::document;

/// The router's source: its match arms are the table of what it serves.
const ROUTES: &str = include_str!("../routes.rs");

/// One segment of a path shape: a literal, or a parameter (`{x}` / a binding / `_`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param,
}

/// One match arm of the router: its method (`None` for `_`), its path shape, and
/// for a `method_not_allowed` arm the methods it names.
#[derive(Debug)]
struct Arm {
    method: Option<String>,
    shape: Vec<Seg>,
    allowed: Option<BTreeSet<String>>,
}

fn doc() -> Value {
    serde_json::from_slice(document()).expect("the document is JSON")
}

fn shape_of_doc_path(path: &str) -> Vec<Seg> {
    path.trim_start_matches('/')
        .split('/')
        .map(|s| {
            if s.starts_with('{') {
                Seg::Param
            } else {
                Seg::Lit(s.to_string())
            }
        })
        .collect()
}

/// `"push-ids", push_id` → the shape; `None` for a prefix arm (`..`).
fn shape_of_slice(inner: &str, prefix: &[Seg]) -> Option<Vec<Seg>> {
    let mut shape = prefix.to_vec();
    for part in inner.split(',').map(str::trim) {
        if part == ".." {
            return None;
        }
        shape.push(match part.strip_prefix('"') {
            Some(lit) => Seg::Lit(lit.trim_end_matches('"').to_string()),
            None => Seg::Param,
        });
    }
    Some(shape)
}

/// Every slice pattern `[...]` of a line, in order.
fn slices(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        let close = rest[open..]
            .find(']')
            .expect("a slice pattern closes on its line")
            + open;
        out.push(&rest[open + 1..close]);
        rest = &rest[close + 1..];
    }
    out
}

/// The arms of `route`: the first match (top-level paths, GET only) and the second
/// (`/v1/...`, by method).
fn router_arms() -> Vec<Arm> {
    let body = ROUTES
        .split_once("async fn route(")
        .expect("routes.rs has fn route")
        .1;
    let body = body.split_once("\nasync fn ").map_or(body, |(b, _)| b);
    let (top, v1) = body
        .split_once("match (&method, &seg[1..])")
        .expect("route matches (&method, &seg[1..]) for /v1");
    let mut arms = Vec::new();
    for line in top.lines().map(str::trim) {
        if !line.starts_with('[') || !line.contains("=>") {
            continue;
        }
        let pattern = line.split("=>").next().expect("an arm has a pattern");
        for inner in slices(pattern) {
            if let Some(shape) = shape_of_slice(inner, &[]) {
                arms.push(Arm {
                    method: None,
                    shape,
                    allowed: Some(BTreeSet::from(["GET".to_string()])),
                });
            }
        }
    }
    let v1_prefix = [Seg::Lit("v1".into())];
    for line in v1.lines().map(str::trim) {
        let Some((pattern, handler)) = line.split_once("=>") else {
            continue;
        };
        let method = if let Some(m) = pattern.strip_prefix("(&Method::") {
            Some(m.split(',').next().expect("a method").to_string())
        } else if pattern.starts_with("(_, [") {
            None
        } else {
            continue;
        };
        let inner = slices(pattern)[0];
        let shape = shape_of_slice(inner, &v1_prefix).expect("v1 arms name whole paths");
        let allowed = handler
            .split_once("method_not_allowed(\"")
            .map(|(_, a)| a.split('"').next().expect("a quoted list"))
            .map(|a| a.split(", ").map(str::to_string).collect());
        arms.push(Arm {
            method,
            shape,
            allowed,
        });
    }
    arms
}

/// The documented paths: shape and methods.
fn documented() -> Vec<(String, Vec<Seg>, BTreeSet<String>)> {
    let doc = doc();
    let paths = doc["paths"].as_object().expect("paths is an object");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("a path item is an object")
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "patch", "head"].contains(&k.as_str()))
                .map(|k| k.to_uppercase())
                .collect();
            (path.clone(), shape_of_doc_path(path), methods)
        })
        .collect()
}

#[test]
fn the_router_reads_as_a_table_of_arms() {
    // Guards the reading below: if the router's layout changes so that no arm is
    // found, the comparison would pass vacuously.
    let arms = router_arms();
    assert!(arms.len() >= 30, "found only {} arms: {arms:?}", arms.len());
    assert!(arms.iter().any(|a| a.method.as_deref() == Some("PUT")
        && a.shape == shape_of_doc_path("/v1/push-ids/{push_id}")));
}

#[test]
fn every_route_the_router_serves_is_in_the_document_with_its_methods() {
    let documented = documented();
    for arm in router_arms() {
        let Some((path, _, methods)) = documented.iter().find(|(_, s, _)| *s == arm.shape) else {
            panic!(
                "the router serves {:?} but the document has no such path",
                arm.shape
            );
        };
        if let Some(m) = &arm.method {
            assert!(
                methods.contains(m),
                "the router serves {m} {path}; the document has {methods:?}"
            );
        }
        if let Some(allowed) = &arm.allowed {
            assert_eq!(
                allowed, methods,
                "methods of {path}: the router's Allow vs the document"
            );
        }
    }
}

#[test]
fn every_documented_path_is_served_by_the_router() {
    let arms = router_arms();
    for (path, shape, methods) in documented() {
        assert!(!methods.is_empty(), "{path} documents no operation");
        assert!(
            arms.iter().any(|a| a.shape == shape),
            "the document has {path} but the router has no arm for it"
        );
    }
}

#[test]
fn the_document_is_openapi_3_1_and_every_reference_resolves() {
    let doc = doc();
    assert!(doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1.")));
    fn walk(v: &Value, doc: &Value, seen: &mut usize) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let pointer = r.strip_prefix('#').expect("references are local");
                    assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
                    *seen += 1;
                }
                map.values().for_each(|v| walk(v, doc, seen));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, doc, seen)),
            _ => {}
        }
    }
    let mut seen = 0;
    walk(&doc, &doc, &mut seen);
    assert!(seen > 30, "only {seen} references");
}

#[test]
fn every_guarded_operation_names_the_bearer_scheme_and_its_401() {
    let doc = doc();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let guarded = path.starts_with("/v1/") && path != "/v1/openapi.json";
            let has_security = op.get("security").is_some();
            assert_eq!(guarded, has_security, "{method} {path}: security");
            assert_eq!(
                guarded,
                op["responses"].get("401").is_some(),
                "{method} {path}: 401"
            );
        }
    }
}

#[test]
fn the_documented_priorities_are_the_engines() {
    let doc = doc();
    let values: BTreeSet<String> = doc["components"]["schemas"]["Priority"]["enum"]
        .as_array()
        .expect("Priority is an enum")
        .iter()
        .map(|v| v.as_str().expect("a string value").to_string())
        .collect();
    use crate::providers::Priority;
    let engine: BTreeSet<String> = [Priority::High, Priority::Normal]
        .iter()
        .map(|p| serde_json::to_value(p).expect("a priority serializes"))
        .map(|v| v.as_str().expect("a priority is a string").to_string())
        .collect();
    assert_eq!(values, engine);
}

#[test]
fn an_optional_body_is_optional_and_never_null() {
    let doc = doc();
    let body = &doc["paths"]["/v1/calls/{call_id}/cancel"]["post"]["requestBody"];
    assert_ne!(body["required"], true, "{body}");
    let schema = &body["content"]["application/json"]["schema"];
    assert_eq!(
        schema["$ref"], "#/components/schemas/CancelRequest",
        "{body}"
    );
    let bind = &doc["paths"]["/v1/push-ids/{push_id}"]["put"]["requestBody"];
    assert_eq!(bind["required"], true, "{bind}");
}

/// The `enum` of property `field` of schema `schema`.
fn enum_of(doc: &Value, schema: &str, field: &str) -> Vec<String> {
    let property = &doc["components"]["schemas"][schema]["properties"][field];
    property["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{schema}.{field} is not an enum: {property}"))
        .iter()
        .map(|v| v.as_str().expect("a string value").to_string())
        .collect()
}

#[test]
fn fields_with_a_fixed_set_of_values_are_documented_as_enums() {
    let doc = doc();
    let providers: Vec<String> = crate::providers::ProviderKind::ALL
        .iter()
        .map(|p| p.as_str().to_string())
        .collect();
    assert!(providers.contains(&"apns_voip".to_string()));
    for schema in ["BindRequest", "BoundDevice", "DebugVerdict", "FailedTarget"] {
        assert_eq!(enum_of(&doc, schema, "provider"), providers, "{schema}");
    }
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let environments = strings(&["production", "sandbox"]);
    assert_eq!(enum_of(&doc, "BindRequest", "environment"), environments);
    assert_eq!(enum_of(&doc, "BoundDevice", "environment"), environments);
    let kinds = strings(&["peer", "group"]);
    assert_eq!(enum_of(&doc, "MessageRequest", "conversation_type"), kinds);
    assert_eq!(
        enum_of(&doc, "NotificationStatus", "conversation_type"),
        kinds
    );
    let statuses = strings(&["do_not_disturb", "notify"]);
    assert_eq!(enum_of(&doc, "NotificationRequest", "status"), statuses);
    assert_eq!(enum_of(&doc, "NotificationStatus", "status"), statuses);
    assert_eq!(
        enum_of(&doc, "DebugVerdict", "outcome"),
        strings(&["delivered", "retry", "token_dead", "rejected"])
    );
    assert_eq!(
        enum_of(&doc, "FailedTarget", "outcome"),
        strings(&[
            "token_dead",
            "rejected",
            "expired",
            "withdrawn",
            "unconfigured"
        ])
    );
    // Optional stays optional; required stays required.
    let bind = &doc["components"]["schemas"]["BindRequest"]["required"];
    let required = bind.as_array().expect("BindRequest has required fields");
    assert!(required.contains(&Value::from("provider")), "{bind}");
    assert!(!required.contains(&Value::from("environment")), "{bind}");
}
