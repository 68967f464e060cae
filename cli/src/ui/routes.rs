//! The desktop app's HTTP surface: the pages, `/login`, `POST /api/<method>`
//! (the control API's operations, JSON in and out), `/api/events`
//! (server-sent events), `/api/upload` and `/api/file`. Every response
//! carries a strict Content-Security-Policy.
//!
//! Operations that name a path on this machine (`files_send`'s `path`,
//! `chats_export`'s `dir`, …) are not taken here: a page must not be able to
//! read or write the user's files by name. Files come in as uploads and go
//! out as downloads instead.

use std::path::PathBuf;

use axum::{
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Path, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use futures::StreamExt;
use meshchat_node::control::{self, ControlError, ControlRequest};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::{assets, events, people, state::AppState};

/// Largest JSON request body (as the control socket's line).
pub(crate) const MAX_JSON_BYTES: usize = control::MAX_LINE_BYTES;

/// No script but ours, nothing inline, no framing, no form posts, no
/// plugins; pictures from us or from `blob:` URLs the page made.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; \
     font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Methods that take a path on this machine, and the server's own.
const NOT_FROM_THE_BROWSER: &[&str] = &[
    "watch",
    "shutdown",
    "chats_export",
    "export",
    "files_send",
    "send_file",
    "files_fetch",
    "fetch_file",
    "files_share",
    "share",
    "files_fetch_ticket",
    "fetch_ticket",
    "profiles_save_picture",
    "profile_avatar",
];

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::file))
        .route("/login", get(login))
        .route("/api/events", get(events::stream))
        .route("/api/file", get(download))
        .route("/api/avatar", get(avatar))
        .route("/api/upload", post(upload))
        .route(
            "/api/{method}",
            post(api).layer(DefaultBodyLimit::max(MAX_JSON_BYTES)),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such page") })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// A JSON error answer.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "code": code, "message": message.into() } });
    (status, axum::Json(body)).into_response()
}

/// Host and Origin on every request, a session on every `/api/` one, and
/// the security headers on every answer.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let checked = state
        .auth
        .check_request(request.method(), request.headers())
        .and_then(|()| {
            if path.starts_with("/api/") && !state.auth.has_session(request.headers()) {
                Err(super::auth::Refusal::Session)
            } else {
                Ok(())
            }
        });
    let mut response = match checked {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            let status = match refusal {
                super::auth::Refusal::Session => StatusCode::UNAUTHORIZED,
                _ => StatusCode::FORBIDDEN,
            };
            error(status, "refused", refusal.message())
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    secret: String,
}

/// Exchanges the one-time secret for a session cookie, then shows the app
/// (the secret leaves the address bar with the redirect).
async fn login(State(state): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    match state.auth.login(&q.secret) {
        Some(session) => {
            let mut response = Redirect::to("/").into_response();
            if let Ok(cookie) = HeaderValue::from_str(&state.auth.set_cookie(&session)) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        None => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "This link was used already or is not this daemon's. \
             Run `meshchat ui` again for a new one.\n",
        )
            .into_response(),
    }
}

/// `POST /api/<method>` with the method's params as the JSON body.
async fn api(
    State(state): State<AppState>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "send JSON (Content-Type: application/json)",
        );
    }
    let params: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
        }
    };
    let answer = match method.as_str() {
        "ui_people" => people::people(&state.node).await,
        "ui_invite_qr" => people::invite_qr(&state.node).await,
        m if NOT_FROM_THE_BROWSER.contains(&m) => Err(ControlError {
            code: "bad_request".into(),
            message: format!("{m} is not offered to the browser (it names files on this machine)"),
        }),
        "profiles_set" | "profile_set" if params.get("avatar_path").is_some() => {
            Err(ControlError {
                code: "bad_request".into(),
                message: "upload the picture instead of naming a file".into(),
            })
        }
        _ => match parse_request(&method, params) {
            Ok(request) if offered_to_the_browser(&request) => {
                control::call(&state.node, request).await
            }
            Ok(_) => Err(ControlError {
                code: "bad_request".into(),
                message: format!("{method} is not offered to the browser"),
            }),
            Err(e) => Err(e),
        },
    };
    match answer {
        Ok(result) => axum::Json(json!({ "result": result })).into_response(),
        Err(e) => {
            let status = match e.code.as_str() {
                "bad_request" | "invalid" | "ambiguous" | "exists" => StatusCode::BAD_REQUEST,
                "not_found" => StatusCode::NOT_FOUND,
                "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
                "storage" | "shutting_down" => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, &e.code, e.message)
        }
    }
}

/// The operations a page may call: every one that names no path on this
/// machine. A list of what is allowed, so an operation added later is
/// refused here until someone decides it is safe.
fn offered_to_the_browser(request: &ControlRequest) -> bool {
    use ControlRequest as R;
    match request {
        R::ProfilesSet { avatar_path, .. } => avatar_path.is_none(),
        R::NetworkStatus
        | R::NetworkDial { .. }
        | R::NetworkDisconnect { .. }
        | R::ContactsAdd { .. }
        | R::ContactsAddInvite { .. }
        | R::ContactsList
        | R::ContactsRemove { .. }
        | R::ContactsBlock { .. }
        | R::ContactsVerify { .. }
        | R::ContactsInvite
        | R::ContactsRequests
        | R::ContactsAcceptRequest { .. }
        | R::ContactsDeleteRequest { .. }
        | R::ChatsList
        | R::ChatsSend { .. }
        | R::ChatsEdit { .. }
        | R::ChatsDelete { .. }
        | R::ChatsReact { .. }
        | R::ChatsTyping { .. }
        | R::ChatsHistory { .. }
        | R::ChatsMessageInfo { .. }
        | R::GroupsCreate { .. }
        | R::GroupsInfo { .. }
        | R::GroupsAddMember { .. }
        | R::GroupsRemoveMember { .. }
        | R::GroupsSetRole { .. }
        | R::GroupsRename { .. }
        | R::GroupsSetHistoryForNewMembers { .. }
        | R::GroupsLeave { .. }
        | R::ProfilesGet { .. }
        | R::ProfilesLastSeen { .. }
        | R::ProfilesLastSeenPrivacy
        | R::ProfilesSetLastSeenPrivacy { .. }
        | R::FilesAutoDownload
        | R::FilesSetAutoDownload { .. } => true,
        // Paths on this machine (files_send, files_fetch, files_share,
        // files_fetch_ticket, profiles_save_picture, chats_export), the
        // server's own (watch, shutdown), and whatever comes next.
        _ => false,
    }
}

/// The control request `method` with `params`; a unit method takes `{}`,
/// `null` or nothing.
fn parse_request(method: &str, params: Value) -> Result<ControlRequest, ControlError> {
    let bad = |e: serde_json::Error| ControlError {
        code: "bad_request".into(),
        message: format!("{method}: {e}"),
    };
    let with = json!({ "method": method, "params": params });
    match serde_json::from_value(with) {
        Ok(r) => Ok(r),
        Err(e) => {
            let empty = params.is_null() || params.as_object().is_some_and(|o| o.is_empty());
            if empty {
                serde_json::from_value(json!({ "method": method })).map_err(|_| bad(e))
            } else {
                Err(bad(e))
            }
        }
    }
}

/// A fresh private folder under `files_dir` for one upload or download.
async fn scratch_dir(state: &AppState) -> std::io::Result<PathBuf> {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = state.files_dir.join(name);
    tokio::fs::create_dir_all(&dir).await?;
    Ok(dir)
}

/// A file name from the browser, made safe to create: no separators, no
/// leading dot, no control characters, at most 200 bytes.
fn safe_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    while out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    while out.len() > 200 {
        out.pop();
    }
    if out.is_empty() {
        "file".into()
    } else {
        out
    }
}

#[derive(Deserialize)]
struct UploadQuery {
    /// Where to send it (as `chats_send`'s `to`); none with `avatar`.
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    /// The file is my new profile picture.
    #[serde(default)]
    avatar: bool,
}

/// `POST /api/upload?to=…&name=…`: the body is the file, sent as
/// `files_send` would (or with `avatar=true` set as the profile picture).
async fn upload(
    State(state): State<AppState>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Response {
    if !q.avatar && q.to.is_none() {
        return error(StatusCode::BAD_REQUEST, "bad_request", "say `to` whom");
    }
    let dir = match scratch_dir(&state).await {
        Ok(d) => d,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string()),
    };
    let path = dir.join(safe_name(q.name.as_deref().unwrap_or("file")));
    let written = write_body(&path, body, state.max_upload).await;
    let answer = match written {
        Err(response) => Err(response),
        Ok(()) => {
            let request = if q.avatar {
                ControlRequest::ProfilesSet {
                    name: None,
                    status: None,
                    avatar: None,
                    avatar_path: Some(path.clone()),
                }
            } else {
                ControlRequest::FilesSend {
                    to: q.to.unwrap_or_default(),
                    path: path.clone(),
                    caption: q.caption.filter(|c| !c.is_empty()),
                }
            };
            Ok(control::call(&state.node, request).await)
        }
    };
    let _ = tokio::fs::remove_dir_all(&dir).await;
    match answer {
        Err(response) => response,
        Ok(Ok(result)) => axum::Json(json!({ "result": result })).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, &e.code, e.message),
    }
}

/// Streams the body into `path`, refusing more than `max` bytes.
async fn write_body(path: &std::path::Path, body: Body, max: u64) -> Result<(), Response> {
    let io = |e: std::io::Error| error(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string());
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
        total += chunk.len() as u64;
        if total > max {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("files are limited to {max} bytes (blobs.max_file_bytes)"),
            ));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok(())
}

#[derive(Deserialize)]
struct FileQuery {
    chat: String,
    message: String,
    /// Shown in the page (pictures and videos only) rather than saved.
    #[serde(default)]
    inline: bool,
}

/// Types a page may show inline; anything else is a download, so a
/// received HTML or SVG file never runs as this site.
const INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "video/mp4",
    "video/webm",
];

/// `GET /api/file?chat=…&message=…`: the message's file, fetched and
/// verified as `files_fetch` does, as a download.
async fn download(State(state): State<AppState>, Query(q): Query<FileQuery>) -> Response {
    let dir = match scratch_dir(&state).await {
        Ok(d) => d,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string()),
    };
    let request = ControlRequest::FilesFetch {
        chat: q.chat.clone(),
        message: q.message.clone(),
        out: Some(dir.clone()),
        overwrite: true,
        allow_hidden: false,
    };
    let response = match control::call(&state.node, request).await {
        Err(e) => error(StatusCode::NOT_FOUND, &e.code, e.message),
        Ok(result) => serve_fetched(q.inline, &result).await,
    };
    let _ = tokio::fs::remove_dir_all(&dir).await;
    response
}

#[derive(Deserialize)]
struct AvatarQuery {
    /// Whose (default: mine).
    #[serde(default)]
    peer: Option<String>,
}

/// `GET /api/avatar?peer=…`: a profile picture, fetched and verified as
/// `profiles_save_picture` does, shown inline when it is a picture.
async fn avatar(State(state): State<AppState>, Query(q): Query<AvatarQuery>) -> Response {
    let dir = match scratch_dir(&state).await {
        Ok(d) => d,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string()),
    };
    let request = ControlRequest::ProfilesSavePicture {
        peer: q.peer,
        out: dir.join("picture"),
    };
    let response = match control::call(&state.node, request).await {
        Err(e) => error(StatusCode::NOT_FOUND, &e.code, e.message),
        Ok(result) => serve_fetched(true, &result).await,
    };
    let _ = tokio::fs::remove_dir_all(&dir).await;
    response
}

/// The file a fetch wrote (`result.path`), inline if asked and it is a
/// picture or a video, else as a download.
async fn serve_fetched(inline: bool, result: &Value) -> Response {
    let Some(path) = result.get("path").and_then(|p| p.as_str()) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no file written",
        );
    };
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "io", e.to_string()),
    };
    let name = std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    // The type is sniffed from the bytes here, whatever the sender claimed.
    let mime = infer::get(&bytes)
        .map(|t| t.mime_type().to_owned())
        .unwrap_or_default();
    let inline = inline && INLINE_TYPES.contains(&mime.as_str());
    let content_type = if inline {
        mime
    } else {
        "application/octet-stream".into()
    };
    // RFC 6266 with the name percent-encoded (no quoting games).
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let disposition = if inline { "inline" } else { "attachment" };
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename*=UTF-8''{encoded}")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_and_without_params() {
        assert_eq!(
            parse_request("chats_list", json!({})).unwrap(),
            ControlRequest::ChatsList
        );
        assert_eq!(
            parse_request("chats_list", Value::Null).unwrap(),
            ControlRequest::ChatsList
        );
        assert_eq!(
            parse_request("profiles_get", json!({})).unwrap(),
            ControlRequest::ProfilesGet { peer: None }
        );
        assert!(matches!(
            parse_request("chats_send", json!({"to": "bob", "text": "hi"})).unwrap(),
            ControlRequest::ChatsSend { .. }
        ));
        assert_eq!(
            parse_request("chats_send", json!({"to": "bob"}))
                .unwrap_err()
                .code,
            "bad_request"
        );
        assert!(parse_request("no_such_method", json!({})).is_err());
        assert!(parse_request("chats_list", json!([1, 2])).is_err());
    }

    #[test]
    fn operations_naming_paths_are_not_offered() {
        let path = || std::path::PathBuf::from("/etc/passwd");
        for refused in [
            ControlRequest::FilesSend {
                to: "bob".into(),
                path: path(),
                caption: None,
            },
            ControlRequest::ChatsExport {
                chat: "bob".into(),
                dir: path(),
            },
            ControlRequest::FilesShare { path: path() },
            ControlRequest::ProfilesSavePicture {
                peer: None,
                out: path(),
            },
            ControlRequest::ProfilesSet {
                name: None,
                status: None,
                avatar: None,
                avatar_path: Some(path()),
            },
            ControlRequest::Shutdown,
            ControlRequest::Watch,
        ] {
            assert!(!offered_to_the_browser(&refused), "{refused:?}");
        }
        assert!(offered_to_the_browser(&ControlRequest::ChatsList));
        assert!(offered_to_the_browser(&ControlRequest::ProfilesSet {
            name: Some("me".into()),
            status: None,
            avatar: None,
            avatar_path: None,
        }));
    }

    #[test]
    fn names_from_the_browser_are_made_safe() {
        assert_eq!(safe_name("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(safe_name(".bashrc"), "_bashrc");
        assert_eq!(safe_name(""), "file");
        assert_eq!(safe_name("a\nb"), "a_b");
        assert!(safe_name(&"é".repeat(300)).len() <= 200);
    }
}
