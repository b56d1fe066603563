//! The native API against its OpenAPI document (`src/http/openapi.json`): every
//! documented operation is served with a documented status, and the bodies the
//! server sends validate against the document's schemas.

use std::sync::OnceLock;

use serde_json::Value;

use crate::common::*;

pub fn doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::from_str(include_str!("../../src/http/openapi.json"))
            .expect("openapi.json is JSON")
    })
}

fn resolve(schema: &Value) -> &Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local $ref");
            resolve(&doc()["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => panic!("unknown type {t}"),
    }
}

/// Validates `v` against `schema` (the subset of JSON Schema the document
/// uses: $ref, type, properties, required, additionalProperties, items, enum,
/// minimum/maximum, minItems/maxItems, maxLength, oneOf); pushes what is wrong.
pub fn validate(schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let s = resolve(schema);
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let ok = one
            .iter()
            .filter(|alt| {
                let mut e = Vec::new();
                validate(alt, v, at, &mut e);
                e.is_empty()
            })
            .count();
        if ok != 1 {
            errors.push(format!("{at}: matches {ok} of oneOf, not 1: {v}"));
        }
        return;
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(t, v),
            Value::Array(ts) => ts.iter().any(|t| type_ok(t.as_str().unwrap(), v)),
            _ => panic!("bad type at {at}"),
        };
        if !ok {
            errors.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errors.push(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
            || s.get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n > m)
        {
            errors.push(format!("{at}: {n} is out of range"));
        }
    }
    if let (Some(text), Some(max)) = (v.as_str(), s.get("maxLength").and_then(Value::as_u64)) {
        if text.chars().count() as u64 > max {
            errors.push(format!("{at}: longer than {max}"));
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
            || s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
        {
            errors.push(format!("{at}: {n} items is out of range"));
        }
        if let Some(item) = s.get("items") {
            for (i, x) in items.iter().enumerate() {
                validate(item, x, &format!("{at}[{i}]"), errors);
            }
        }
    }
    if let Some(o) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap();
            if !o.contains_key(r) {
                errors.push(format!("{at}: {r} is required"));
            }
        }
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(ps, x, &format!("{at}.{k}"), errors),
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: {k} is not in the document"))
                }
                None => {}
            }
        }
    }
}

fn assert_valid(schema: &Value, v: &Value, what: &str) {
    let mut errors = Vec::new();
    validate(schema, v, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{what} does not match the OpenAPI document:\n{}\n{v:#}",
        errors.join("\n")
    );
}

/// Checks an answer of `method` on the documented `path` (as templated in the
/// document): its status is documented, and its body matches that status's schema.
pub fn check(method: &str, path: &str, r: &Response) {
    let op = &doc()["paths"][path][method];
    assert!(
        op.is_object(),
        "{method} {path} is not in the OpenAPI document"
    );
    let status = r.status.to_string();
    let resp = &op["responses"][&status];
    assert!(
        resp.is_object(),
        "{method} {path} answered {status}, which is not documented: {}",
        r.text()
    );
    let Some(content) = resp["content"].as_object() else {
        return;
    };
    let (ct, media) = content.iter().next().unwrap();
    let got = r.header("content-type").unwrap_or_default();
    assert_eq!(
        got.split(';').next().unwrap(),
        ct,
        "{method} {path} {status}"
    );
    if !ct.ends_with("json") {
        return;
    }
    let body: Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()));
    assert_valid(
        &media["schema"],
        &body,
        &format!("{method} {path} {status}"),
    );
}

/// Checks a callback body against the document's `callEvent` webhook.
pub fn check_callback(body: &Value) {
    let schema = &doc()["webhooks"]["callEvent"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    assert_valid(schema, body, "a callback");
}

#[test]
fn every_documented_operation_is_served_as_documented() {
    let rx = Upstream::start(Behaviour::Reply(200, "text/plain", "ok"));
    let mut d = Daemon::start(&crate::native::config(&rx.url()));
    let served: Value = serde_json::from_slice(&d.get("/v1/openapi.json").body).unwrap();
    assert_eq!(
        &served,
        doc(),
        "the daemon serves the document in the repository"
    );

    // The document's own example places a call.
    let example = &doc()["paths"]["/v1/calls"]["post"]["requestBody"]["content"]
        ["application/json"]["example"];
    assert_valid(
        &doc()["paths"]["/v1/calls"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
        example,
        "the request example",
    );
    let r = crate::native::place(&d, example);
    check("post", "/v1/calls", &r);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));

    let bad = crate::native::place(&d, &serde_json::json!({ "a": {}, "b": {} }));
    check("post", "/v1/calls", &bad);
    let auth = [
        ("admin", None),
        (
            "partner",
            Some((crate::native::USER, crate::native::PASSWORD)),
        ),
    ];
    for (who, basic) in auth {
        let get = |path: &str| match basic {
            None => d.admin_get(path, TOKEN),
            Some((u, p)) => crate::native::get_as(&d, u, p, path),
        };
        for (template, path) in [
            ("/v1/calls", "/v1/calls?limit=5".to_string()),
            ("/v1/calls", "/v1/calls?since=noon".to_string()),
            ("/v1/calls/{id}", format!("/v1/calls/{id}")),
            (
                "/v1/calls/{id}",
                "/v1/calls/01000000-0000-7000-8000-000000000000".to_string(),
            ),
            (
                "/v1/calls/{id}/callbacks",
                format!("/v1/calls/{id}/callbacks"),
            ),
            ("/v1/partners", "/v1/partners".to_string()),
            (
                "/v1/calls/{id}/recording",
                format!("/v1/calls/{id}/recording"),
            ),
        ] {
            let r = get(&path);
            assert!(r.status < 500, "{who}: GET {path}: {}", r.text());
            check("get", template, &r);
        }
        let r = get("/v1/calls/{id}/callbacks".replace("{id}", &id).as_str());
        assert_eq!(r.status, 200, "{who}");
    }
    let hang = request(
        d.addr,
        &format!("POST /v1/calls/{id}/hangup HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(hang.status, 409, "the call has ended: {}", hang.text());
    check("post", "/v1/calls/{id}/hangup", &hang);

    // Every callback the receiver got matches the webhook's schema.
    for r in rx.requests() {
        check_callback(&serde_json::from_str(&r.body).unwrap());
    }
}

#[test]
fn the_validator_refuses_what_the_document_does_not_allow() {
    let created = &doc()["components"]["schemas"]["CallCreated"];
    let mut e = Vec::new();
    validate(
        created,
        &serde_json::json!({ "id": 1, "state": "dancing", "extra": true }),
        "$",
        &mut e,
    );
    let text = e.join("\n");
    for want in [
        "$.id: 1 is not of type",
        "$.state: \"dancing\" is not one of",
        "$: extra is not in the document",
        "$: href is required",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    let side = &doc()["components"]["schemas"]["Side"];
    let mut e = Vec::new();
    validate(
        side,
        &serde_json::json!({ "participants": [], "ring_timeout": 500 }),
        "$",
        &mut e,
    );
    assert_eq!(e.len(), 2, "{e:?}");
}
