//! The dashboard: a web page at `/ui/` on the control API's address, for watching and steering
//! the node from a browser. Its files (`node/ui/`: one page, a style sheet and small JavaScript
//! modules, no build step) are embedded in the binary; the page calls the `/v1/` routes like
//! any other client.
//!
//! `licet-node ui` prints the page's address with the token in its fragment
//! (`/ui/#token=…`); the page moves the token to the tab's `sessionStorage` and sends it as
//! `Authorization: Bearer`. No cookie carries it, so another site cannot ride on it.
//!
//! # Invariants
//!
//! - Every file is served with [`CONTENT_SECURITY_POLICY`]: scripts, styles and calls come
//!   only from the daemon itself, no inline script or style runs, no other site may frame the
//!   page, and `X-Content-Type-Options: nosniff` keeps each file its declared type. The page
//!   therefore holds no inline script, style or event handler attribute (a test checks).
//! - Only the files listed in [`FILES`] are served; a path that names none is a 404, so no
//!   request reads the disk.
//! - The `Host` and `Origin` checks of `api::server` cover these routes like every other.

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};

use crate::contract::{ApiError, ApiErrorKind, routes};

/// The policy every dashboard file is served with: nothing but the daemon's own files and
/// routes, no inline code, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file of the dashboard.
pub struct DashboardFile {
    /// Its name under `/ui/`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! dashboard_files {
    ($(($name:literal, $type:expr)),* $(,)?) => {
        /// Every file of the dashboard, the page first.
        pub const FILES: &[DashboardFile] = &[$(DashboardFile {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("../../ui/", $name)),
        }),*];
    };
}

dashboard_files![
    ("index.html", HTML),
    ("style.css", CSS),
    ("app.js", JS),
    ("api.js", JS),
    ("format.js", JS),
    ("graph.js", JS),
    ("overview.js", JS),
    ("content.js", JS),
    ("add.js", JS),
    ("trust.js", JS),
    ("peers.js", JS),
    ("limits.js", JS),
    ("log.js", JS),
    ("favicon.svg", SVG),
];

/// The dashboard's routes, merged into the control API's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            routes::DASHBOARD.trim_end_matches('/'),
            get(|| async { Redirect::permanent(routes::DASHBOARD) }),
        )
        .route(routes::DASHBOARD, get(|| async { serve(&FILES[0]) }))
        .route(routes::DASHBOARD_FILE, get(file))
}

async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|file| file.name == name) {
        Some(file) => serve(file),
        None => ApiError::new(
            ApiErrorKind::NotFound,
            format!("the dashboard has no file {name:?}"),
        )
        .into_response(),
    }
}

fn serve(file: &DashboardFile) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        file.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use reqwest::StatusCode;

    use super::*;
    use crate::api::server::{
        fake::{FakeNode, TestServer, within},
        max_manifest_request_bytes,
    };

    const TOKEN: &str = "7a0c000000000000000000000000000000000000000000000000000000000011";

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_and_a_strict_policy() {
        let node = Arc::new(FakeNode::default());
        let server = TestServer::start(node.clone(), TOKEN.to_owned()).await;
        let paths = std::iter::once(("/ui/".to_owned(), &FILES[0]))
            .chain(FILES.iter().map(|f| (format!("/ui/{}", f.name), f)));
        for (path, file) in paths {
            let response = within(client().get(server.url(&path)).send())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let headers = response.headers();
            assert_eq!(headers["content-type"], file.content_type, "{path}");
            let policy = headers["content-security-policy"].to_str().unwrap();
            for directive in [
                "default-src 'self'",
                "script-src 'self'",
                "style-src 'self'",
                "frame-ancestors 'none'",
            ] {
                assert!(policy.contains(directive), "{path}: {policy}");
            }
            assert!(!policy.contains("unsafe"), "{path}: {policy}");
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert!(!headers.contains_key("access-control-allow-origin"));
            assert!(!headers.contains_key("set-cookie"));
            assert_eq!(within(response.text()).await.unwrap(), file.body, "{path}");
        }
        assert!(node.calls().is_empty(), "the page itself asked the node");

        let response = within(client().get(server.url("/ui")).send())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(response.headers()["location"], "/ui/");
        for missing in ["/ui/secret.txt", "/ui/..%2fCargo.toml", "/ui/sub/app.js"] {
            let response = within(client().get(server.url(missing)).send())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
        }
    }

    /// Under the policy an inline script, style or handler would not run: the page has none,
    /// builds no HTML from text, and names only files that are served.
    #[test]
    fn the_page_holds_no_inline_code_and_names_only_served_files() {
        let page = FILES[0].body;
        for script in page.split("<script").skip(1) {
            let tag = &script[..script.find('>').unwrap()];
            assert!(tag.contains("src="), "an inline script: <script{tag}>");
        }
        assert!(!page.contains("<style"), "an inline style sheet");
        assert!(!page.contains(" style="), "an inline style attribute");
        let attributes = page
            .split(|c: char| c.is_whitespace())
            .filter(|w| w.starts_with("on") && w.contains('=') && !w.starts_with("on="));
        assert_eq!(attributes.count(), 0, "an inline event handler");
        let served = |name: &str| FILES.iter().any(|f| f.name == name);
        for attribute in ["src=\"", "href=\""] {
            for rest in page.split(attribute).skip(1) {
                let name = &rest[..rest.find('"').unwrap()];
                assert!(served(name), "index.html names {name}, which is not served");
            }
        }
        for file in FILES.iter().filter(|f| f.content_type == JS) {
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "document.write",
            ] {
                assert!(
                    !file.body.contains(forbidden),
                    "{} uses {forbidden}",
                    file.name
                );
            }
            for rest in file.body.split("from './").skip(1) {
                let name = &rest[..rest.find('\'').unwrap()];
                assert!(
                    served(name),
                    "{} imports {name}, which is not served",
                    file.name
                );
            }
        }
    }

    #[test]
    fn the_add_page_bounds_a_manifest_as_the_daemon_does() {
        let add = FILES.iter().find(|f| f.name == "add.js").unwrap().body;
        let line = add
            .lines()
            .find(|l| l.starts_with("const MAX_MANIFEST_BYTES = "))
            .unwrap();
        let value = line
            .trim_start_matches("const MAX_MANIFEST_BYTES = ")
            .trim_end_matches(';');
        assert_eq!(value, max_manifest_request_bytes().to_string(), "{line}");
    }
}
