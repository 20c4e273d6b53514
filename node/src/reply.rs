//! Error answers of the HTTP API: `{"error": {"code": SQLSTATE, "message"}}`
//! with the HTTP status that goes with the SQLSTATE's class.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ordo_expr::ExecError;
use serde_json::json;

pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

pub fn exec_error(e: &ExecError) -> Response {
    let code = e.sqlstate();
    let status = match &code[..2] {
        "57" | "53" => StatusCode::SERVICE_UNAVAILABLE,
        // Outcome unknown (08007): the node gave up waiting, like a gateway.
        "08" => StatusCode::GATEWAY_TIMEOUT,
        "XX" => StatusCode::INTERNAL_SERVER_ERROR,
        "54" => StatusCode::PAYLOAD_TOO_LARGE,
        "23" => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, code, e.to_string())
}
