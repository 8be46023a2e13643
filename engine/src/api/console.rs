//! The operator's web console at `/console`: one page and its script and style,
//! built into the binary (no CDN, no build step, nothing fetched from elsewhere).
//!
//! The page and its assets need no token, like the OpenAPI document: they hold
//! nothing but code. The operator types the API token into the page, which keeps it
//! in `sessionStorage` (gone with the tab) and sends it as `Authorization: Bearer`
//! on its own requests to the API, so every view goes through the same checks as
//! any client. The page shows the live overview (`/v1/stats` and `/readyz` each
//! second), a user ([`GET /v1/users/{user_id}`](super::routes)), a message's or a
//! call's ledger, a debug push with the vendor's verdict and the running
//! configuration ([`running`], secrets redacted).
//!
//! Every answer carries a `Content-Security-Policy` that allows only this origin's
//! script, style and requests, so the page can load nothing from elsewhere even if
//! an answer it shows held markup (the script writes text, never HTML, anyway).

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::Full;

use super::error::ApiError;

pub mod running;

/// The page, its script and its style: (file name, content type, content).
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "",
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
];

/// Only this origin; no inline script or style, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; form-action 'none'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// `GET /console` (`asset` `None` or empty) or `GET /console/{asset}`.
pub fn serve(asset: Option<&str>) -> Result<Response<Full<Bytes>>, ApiError> {
    let name = asset.unwrap_or("");
    let Some((_, kind, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return Err(ApiError::not_found(format!(
            "the console has no file {name:?}"
        )));
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_script_and_style_from_this_engine_only() {
        let page = ASSETS[0].2;
        assert!(page.contains(r#"src="/console/console.js""#), "{page}");
        assert!(page.contains(r#"href="/console/console.css""#), "{page}");
        for (name, _, body) in ASSETS {
            // The SVG namespace is a name, not a request.
            let body = body.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !body.contains("http://") && !body.contains("https://") && !body.contains("//cdn"),
                "{name:?} refers to another origin"
            );
        }
    }

    #[test]
    fn every_asset_is_served_with_its_type_and_the_policy_and_others_are_404() {
        for (name, kind, _) in ASSETS {
            let r = serve(Some(name)).expect("a console file");
            assert_eq!(r.headers()[header::CONTENT_TYPE], kind);
            assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        }
        let e = serve(Some("../config.toml")).unwrap_err();
        assert_eq!(e.code, "not_found");
        assert!(!e.message.starts_with("no endpoint"), "{}", e.message);
    }

    #[test]
    fn the_script_never_logs_the_token_and_writes_text_not_markup() {
        let js = ASSETS[1].2;
        assert!(!js.contains("innerHTML"), "the script sets text only");
        assert!(!js.contains("eval("), "no eval");
        // The token is read in one place and only put into the Authorization header.
        assert_eq!(js.matches("sessionStorage.getItem").count(), 1, "{js}");
    }
}
