//! The description against the router it describes and the replies it promises: the routes
//! both ways, every `$ref`, and a reply of every operation (and its error replies) validated
//! against the description's schema for its status, through the real HTTP server over a fake
//! node.

use std::{collections::BTreeSet, sync::Arc};

use licet_proto::ManifestId;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use super::{description_json, reply_schema};
use crate::{
    api::server::{
        self,
        fake::{FakeNode, TestServer, publisher, within},
    },
    contract::{
        ApiError, ApiErrorKind, GetRequest, LimitsChange, OpenRequest, Refusal, TrustAddRequest,
        routes,
    },
};

const TOKEN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Paths the router may serve outside the API's description, by prefix: the dashboard's page
/// and files (`api::dashboard`), which are not the JSON API. Anything else it serves must be
/// described.
const NOT_DESCRIBED: &[&str] = &["/ui"];

/// The methods tried on every path the router serves (HEAD comes with GET in axum, and is not
/// an operation of its own).
const PROBED: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
    Method::TRACE,
];

fn described() -> Value {
    serde_json::from_str(&description_json()).expect("the description is JSON")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Every (METHOD, path) the description has an operation for.
fn operations(description: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in description["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            found.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    found
}

/// The paths the router serves, read from its `Debug` text, the one place axum lists them:
/// axum 0.8 writes `path_router: PathRouter { … node: Node { paths: {RouteId(1): "/v1/…", …}
/// } }` and then the `fallback_router`. A router written otherwise yields no path, and the test
/// says so rather than pass.
fn router_paths(router: &axum::Router) -> BTreeSet<String> {
    let text = format!("{router:?}");
    let Some(start) = text.find("path_router: PathRouter") else {
        return BTreeSet::new();
    };
    let end = text.find("fallback_router:").unwrap_or(text.len());
    let section = &text[start..end];
    let Some(nodes) = section.find("node: Node { paths: {") else {
        return BTreeSet::new();
    };
    let mut paths = BTreeSet::new();
    let mut rest = &section[nodes..];
    while let Some(at) = rest.find(": \"") {
        let after = &rest[at + 3..];
        let Some(close) = after.find('"') else { break };
        paths.insert(after[..close].to_owned());
        rest = &after[close + 1..];
    }
    paths
        .into_iter()
        .filter(|path| !NOT_DESCRIBED.iter().any(|prefix| path.starts_with(prefix)))
        .collect()
}

/// A described path with its parameters filled in with values that parse.
fn concrete(path: &str) -> String {
    path.replace("{id}", &ManifestId([3; 32]).to_hex())
        .replace("{publisher}", &publisher().to_hex())
}

/// Whether the router has a handler for `method` on `path`: anything but its answer to an
/// unknown path or a method the path does not take.
async fn serves(server: &TestServer, method: &Method, path: &str) -> bool {
    let request = client()
        .request(method.clone(), server.url(&concrete(path)))
        .bearer_auth(TOKEN);
    let response = within(request.send()).await.unwrap();
    let status = response.status();
    let text = within(response.text()).await.unwrap();
    let no_route = status == StatusCode::NOT_FOUND && text.contains("no route");
    let wrong_method =
        status == StatusCode::BAD_REQUEST && text.contains(&format!("does not accept {method}"));
    !(no_route || wrong_method)
}

fn difference(a: &BTreeSet<(String, String)>, b: &BTreeSet<(String, String)>) -> Vec<String> {
    a.difference(b).map(|(m, p)| format!("{m} {p}")).collect()
}

#[tokio::test]
async fn the_router_serves_exactly_the_operations_described() {
    let description = described();
    let described_operations = operations(&description);
    let router = server::router(Arc::new(FakeNode::default()), TOKEN.to_owned(), 1);
    let paths = router_paths(&router);
    assert!(
        paths.contains(routes::STATUS) && paths.contains(routes::CONTENT_ITEM),
        "cannot read the router's paths from its Debug text (has axum changed it?): {paths:?}"
    );
    let server = TestServer::start(Arc::new(FakeNode::default()), TOKEN.to_owned()).await;
    let mut served = BTreeSet::new();
    for path in &paths {
        for method in &PROBED {
            if serves(&server, method, path).await {
                served.insert((method.to_string(), path.clone()));
            }
        }
    }
    let undescribed = difference(&served, &described_operations);
    assert!(
        undescribed.is_empty(),
        "the router serves {undescribed:?}, which the OpenAPI description lacks: give the \
         handler a #[utoipa::path] and list it in ControlApi's paths (api/openapi.rs), or, for \
         pages that are not the JSON API, add their prefix to NOT_DESCRIBED here"
    );
    let unserved = difference(&described_operations, &served);
    assert!(
        unserved.is_empty(),
        "the OpenAPI description has {unserved:?}, which the router does not serve"
    );
}

/// Every value under `value` whose key is `key`, with where it is.
fn find_all<'v>(value: &'v Value, key: &str, at: String, found: &mut Vec<(String, &'v Value)>) {
    match value {
        Value::Object(map) => {
            for (name, inner) in map {
                if name == key {
                    found.push((at.clone(), inner));
                }
                find_all(inner, key, format!("{at}/{name}"), found);
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                find_all(inner, key, format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_reference_and_security_requirement_names_a_component() {
    let description = described();
    assert_eq!(description["openapi"], "3.1.0");
    let mut references = Vec::new();
    find_all(&description, "$ref", String::new(), &mut references);
    assert!(
        references.len() > 40,
        "only {} references",
        references.len()
    );
    for (at, reference) in &references {
        let target = reference.as_str().expect("a $ref is text");
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: {target} is not in the document"));
        assert!(
            description.pointer(pointer).is_some(),
            "{at}: {target} names nothing in the description"
        );
    }
    let schemes = description["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert_eq!(schemes["bearer_token"]["scheme"], "bearer");
    let mut requirements = Vec::new();
    find_all(
        &description["paths"],
        "security",
        String::new(),
        &mut requirements,
    );
    assert!(requirements.len() > 10, "{requirements:?}");
    for (at, requirement) in requirements {
        for alternative in requirement.as_array().expect("a list") {
            for name in alternative.as_object().expect("a requirement").keys() {
                assert!(
                    schemes.contains_key(name),
                    "{at}: scheme {name} is not in components"
                );
            }
        }
    }
}

/// One request of the table below: the operation it exercises and what it sends.
struct Call {
    method: Method,
    path: &'static str,
    target: String,
    body: Body,
}

enum Body {
    Empty,
    Json(Value),
    Bytes(Vec<u8>),
}

/// A JSON body of `value`, as the typed client sends it.
fn json(value: impl serde::Serialize) -> Body {
    Body::Json(serde_json::to_value(value).expect("a request body is JSON"))
}

/// A request of every operation that the fake node answers with success.
fn calls() -> Vec<Call> {
    let id = ManifestId([3; 32]).to_hex();
    let call = |method: Method, path: &'static str, target: String, body: Body| Call {
        method,
        path,
        target,
        body,
    };
    vec![
        call(
            Method::GET,
            routes::STATUS,
            routes::STATUS.into(),
            Body::Empty,
        ),
        call(
            Method::GET,
            routes::PEERS,
            routes::PEERS.into(),
            Body::Empty,
        ),
        call(Method::GET, routes::LOG, routes::LOG.into(), Body::Empty),
        call(
            Method::GET,
            routes::TRUST,
            routes::TRUST.into(),
            Body::Empty,
        ),
        call(
            Method::POST,
            routes::TRUST,
            routes::TRUST.into(),
            json(TrustAddRequest {
                publisher: publisher(),
                name: Some("Acme".into()),
                require_catalog: true,
                mirror: false,
            }),
        ),
        call(
            Method::DELETE,
            routes::TRUST_PUBLISHER,
            routes::trust_publisher(&publisher()),
            Body::Empty,
        ),
        call(
            Method::GET,
            routes::CONTENT,
            routes::CONTENT.into(),
            Body::Empty,
        ),
        call(
            Method::POST,
            routes::CONTENT,
            format!("{}?content_dir=/srv/release", routes::CONTENT),
            Body::Bytes(vec![1, 2, 3]),
        ),
        call(
            Method::GET,
            routes::CONTENT_ITEM,
            format!("/v1/content/{id}"),
            Body::Empty,
        ),
        call(
            Method::DELETE,
            routes::CONTENT_ITEM,
            format!("/v1/content/{id}?delete_files=true"),
            Body::Empty,
        ),
        call(
            Method::POST,
            routes::CONTENT_PAUSE,
            format!("/v1/content/{id}/pause"),
            Body::Empty,
        ),
        call(
            Method::POST,
            routes::CONTENT_RESUME,
            format!("/v1/content/{id}/resume"),
            Body::Empty,
        ),
        call(
            Method::POST,
            routes::CONTENT_CHECK,
            format!("/v1/content/{id}/check"),
            Body::Empty,
        ),
        call(
            Method::POST,
            routes::CONTENT_OPEN,
            format!("/v1/content/{id}/open"),
            json(OpenRequest {
                output_dir: "/srv/downloads".into(),
                replace: false,
            }),
        ),
        call(
            Method::GET,
            routes::LICENCES,
            routes::LICENCES.into(),
            Body::Empty,
        ),
        call(
            Method::POST,
            routes::LICENCES,
            routes::LICENCES.into(),
            Body::Bytes(vec![1, 2, 3]),
        ),
        call(
            Method::DELETE,
            routes::LICENCE_ITEM,
            routes::licence_item(&licet_proto::LicenceId([5; 32])),
            Body::Empty,
        ),
        call(
            Method::POST,
            routes::DOWNLOADS,
            routes::DOWNLOADS.into(),
            json(GetRequest {
                link: format!("licet:{id}"),
                output_dir: "/srv/downloads".into(),
                replace: false,
            }),
        ),
        call(
            Method::GET,
            routes::CATALOGS,
            routes::CATALOGS.into(),
            Body::Empty,
        ),
        call(
            Method::POST,
            routes::CATALOGS,
            format!("{}?head=abcd", routes::CATALOGS),
            Body::Bytes(vec![4, 5, 6]),
        ),
        call(
            Method::GET,
            routes::LIMITS,
            routes::LIMITS.into(),
            Body::Empty,
        ),
        call(
            Method::PUT,
            routes::LIMITS,
            routes::LIMITS.into(),
            json(LimitsChange {
                upload: Some(1_000_000),
                reset: true,
                ..LimitsChange::default()
            }),
        ),
        call(
            Method::GET,
            routes::METRICS,
            routes::METRICS.into(),
            Body::Empty,
        ),
        call(
            Method::GET,
            routes::OPENAPI,
            routes::OPENAPI.into(),
            Body::Empty,
        ),
    ]
}

/// The operation object of `call`.
fn operation<'d>(description: &'d Value, call: &Call) -> &'d Value {
    &description["paths"][call.path][call.method.as_str().to_ascii_lowercase()]
}

/// The response object `operation` lists for `status`, its `$ref` followed; `None` if unlisted.
fn listed<'d>(description: &'d Value, operation: &'d Value, status: u16) -> Option<&'d Value> {
    let response = operation["responses"].get(status.to_string())?;
    match response.get("$ref").and_then(Value::as_str) {
        Some(target) => description.pointer(target.strip_prefix('#')?),
        None => Some(response),
    }
}

/// Fails unless `instance` is valid under `schema`, naming `what` and every error.
fn assert_valid(schema: &Value, instance: &Value, what: &str) {
    let validator = jsonschema::draft202012::new(schema)
        .unwrap_or_else(|e| panic!("{what}: the description's schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the description:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

/// Sends `call` with `token`, `host` (if given) and its body.
async fn send(
    server: &TestServer,
    call: &Call,
    token: Option<&str>,
    host: Option<&str>,
) -> reqwest::Response {
    let mut request = client().request(call.method.clone(), server.url(&call.target));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(host) = host {
        request = request.header(header::HOST, host);
    }
    request = match &call.body {
        Body::Empty => request,
        Body::Json(value) => request.json(value),
        Body::Bytes(bytes) => request
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.clone()),
    };
    within(request.send()).await.unwrap()
}

/// Checks that `response` to `call` is listed with its status and that its JSON body, if the
/// description gives one, validates; returns the body.
async fn check_reply(description: &Value, call: &Call, response: reqwest::Response) -> Value {
    let what = format!(
        "{} {} answering {}",
        call.method,
        call.path,
        response.status()
    );
    let status = response.status().as_u16();
    let operation = operation(description, call);
    let listed = listed(description, operation, status)
        .unwrap_or_else(|| panic!("{what}: the description does not list status {status}"));
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = within(response.bytes()).await.unwrap();
    let Some(content) = listed.get("content").and_then(Value::as_object) else {
        assert!(
            bytes.is_empty(),
            "{what}: a body the description does not list"
        );
        return Value::Null;
    };
    let content_type = content_type.unwrap_or_else(|| panic!("{what}: no Content-Type"));
    assert!(
        content.contains_key(&content_type) || content.contains_key("application/json"),
        "{what}: Content-Type {content_type} is not among {:?}",
        content.keys()
    );
    if !content_type.starts_with("application/json") {
        assert!(
            content.contains_key(&content_type),
            "{what}: {content_type}"
        );
        return Value::Null;
    }
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {bytes:?}"));
    let schema = reply_schema(description, call.method.as_str(), call.path, status)
        .unwrap_or_else(|| panic!("{what}: no JSON schema listed"));
    assert_valid(&schema, &body, &what);
    body
}

/// Every kind of error, with the status it is answered with.
fn error_kinds() -> Vec<ApiErrorKind> {
    let all = [
        ApiErrorKind::BadRequest,
        ApiErrorKind::Unauthorized,
        ApiErrorKind::NotFound,
        ApiErrorKind::Refused,
        ApiErrorKind::Conflict,
        ApiErrorKind::Unavailable,
        ApiErrorKind::Internal,
    ];
    // A new kind fails to compile here until it is added above.
    for kind in all {
        match kind {
            ApiErrorKind::BadRequest
            | ApiErrorKind::Unauthorized
            | ApiErrorKind::NotFound
            | ApiErrorKind::Refused
            | ApiErrorKind::Conflict
            | ApiErrorKind::Unavailable
            | ApiErrorKind::Internal => {}
        }
    }
    all.to_vec()
}

#[tokio::test]
async fn every_operation_answers_as_described_with_its_replies_and_errors() {
    let description = described();
    let node = Arc::new(FakeNode::default());
    let server = TestServer::start(node.clone(), TOKEN.to_owned()).await;
    let calls = calls();
    let exercised: BTreeSet<(String, String)> = calls
        .iter()
        .map(|c| (c.method.to_string(), c.path.to_owned()))
        .collect();
    let missing = difference(&operations(&description), &exercised);
    assert!(
        missing.is_empty(),
        "no call below exercises {missing:?}: add one to calls()"
    );
    let wrong_host = format!("licet.example:{}", server.addr.port());
    for call in &calls {
        let operation = operation(&description, call);
        let what = format!("{} {}", call.method, call.path);
        // The request body the client sends is one the description accepts.
        if let Body::Json(body) = &call.body {
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            let standalone = json!({
                "components": description["components"],
                "allOf": [schema],
            });
            assert_valid(&standalone, body, &format!("{what}: the request body"));
        }
        let reply = check_reply(
            &description,
            call,
            send(&server, call, Some(TOKEN), None).await,
        )
        .await;
        if call.path == routes::OPENAPI {
            let served = send(&server, call, None, None).await;
            let served = within(served.text()).await.unwrap();
            assert!(
                reply == description && served == description_json(),
                "the served description is not the one the code makes"
            );
        }
        // Every route makes the Host check.
        let response = send(&server, call, Some(TOKEN), Some(&wrong_host)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{what}");
        let refused = check_reply(&description, call, response).await;
        assert_eq!(refused["error"]["kind"], "refused", "{what}");

        let needs_token = operation.get("security").is_some();
        let response = send(&server, call, None, None).await;
        if !needs_token {
            assert!(response.status().is_success(), "{what} needs no token");
            continue;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let listed_headers = listed(&description, operation, 401).unwrap()["headers"].clone();
        assert!(
            challenge.is_some() && listed_headers.get("WWW-Authenticate").is_some(),
            "{what}: 401 with {challenge:?}, described with {listed_headers}"
        );
        check_reply(&description, call, response).await;

        // Each error the operation lists that the node can answer, in the ErrorReply shape.
        for kind in error_kinds() {
            let status = server::http_status(kind).as_u16();
            if kind == ApiErrorKind::Unauthorized
                || listed(&description, operation, status).is_none()
            {
                continue;
            }
            node.fail(ApiError::refused(
                kind,
                format!("failed as {kind:?}"),
                Refusal {
                    reason: licet_proto::policy::RefusalReason::Expired,
                    detail: "the licence ended".into(),
                },
            ));
            let response = send(&server, call, Some(TOKEN), None).await;
            *node.fail_with.lock().unwrap() = None;
            if response.status().as_u16() != status {
                // A request the route refuses before it asks the node (none in the table).
                panic!("{what}: failing as {kind:?} answered {}", response.status());
            }
            let error = check_reply(&description, call, response).await;
            assert_eq!(error["error"]["refusal"]["reason"], "Expired", "{what}");
        }
    }
}

#[tokio::test]
async fn an_error_the_router_makes_itself_is_an_error_reply_as_described() {
    let description = described();
    let server = TestServer::start(Arc::new(FakeNode::default()), TOKEN.to_owned()).await;
    // A path parameter that does not parse never reaches the node: 400, as listed.
    let call = Call {
        method: Method::GET,
        path: routes::CONTENT_ITEM,
        target: "/v1/content/not-an-id".into(),
        body: Body::Empty,
    };
    let response = send(&server, &call, Some(TOKEN), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error = check_reply(&description, &call, response).await;
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not-an-id")),
        "{error}"
    );
    assert!(server.node.calls().is_empty());
}

#[test]
fn the_description_is_the_same_text_on_every_call() {
    assert_eq!(description_json(), description_json());
}
