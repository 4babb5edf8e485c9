//! The fake's HTTP API: fleet's `unitsResource`, `stateResource` and
//! `machinesResource`, step by step, over the registry.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE as PAGE_TOKEN;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode, header};
use serde_json::{Value, json};

use super::registry::{Requirements, StoredUnit};
use super::{FAKE, State};
use crate::unit::{UnitOption, is_template};

/// Answers one request as fleet v1.0.0 would.
pub(super) fn route(
    state: &mut State,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    content_types: &[String],
    body: &[u8],
) -> Response<Full<Bytes>> {
    let item = |base: &str| {
        path.strip_prefix(base)
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
    };
    match path {
        "/fleet/v1/units" => match *method {
            Method::GET => list_units(state, query),
            _ => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET supported against this resource",
            ),
        },
        "/fleet/v1/state" => match *method {
            Method::GET => list_states(state, query),
            _ => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET supported against this resource",
            ),
        },
        "/fleet/v1/machines" => match *method {
            Method::GET => list_machines(state, query),
            _ => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "the fake supports only GET against this resource",
            ),
        },
        "/fleet/v1/discovery" => respond(
            StatusCode::OK,
            &json!({"kind": "discovery#restDescription", "name": "fleet", "version": "v1", "description": FAKE}),
        ),
        "/" => error(StatusCode::METHOD_NOT_ALLOWED, ""),
        _ => {
            if let Some(name) = item("/fleet/v1/units/") {
                match *method {
                    Method::GET => get_unit(state, name),
                    Method::PUT => put_unit(state, name, content_types, body),
                    Method::DELETE => delete_unit(state, name),
                    _ => error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "only GET, PUT and DELETE supported against this resource",
                    ),
                }
            } else if let Some(name) = item("/fleet/v1/state/") {
                match *method {
                    Method::GET => {
                        match state.registry.states().into_iter().find(|s| s.name == name) {
                            Some(found) => respond(StatusCode::OK, &found),
                            None => error(StatusCode::NOT_FOUND, "unit state does not exist"),
                        }
                    }
                    _ => error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "only GET supported against this resource",
                    ),
                }
            } else {
                error(StatusCode::NOT_FOUND, "")
            }
        }
    }
}

fn get_unit(state: &State, name: &str) -> Response<Full<Bytes>> {
    match state.registry.units.get(name) {
        None => error(StatusCode::NOT_FOUND, "unit does not exist"),
        Some(unit) if unit.corrupt() => error(StatusCode::INTERNAL_SERVER_ERROR, ""),
        Some(unit) => respond(StatusCode::OK, &state.registry.unit_json(name, unit)),
    }
}

fn delete_unit(state: &mut State, name: &str) -> Response<Full<Bytes>> {
    match state.registry.units.get(name) {
        None => error(StatusCode::NOT_FOUND, "unit does not exist"),
        Some(unit) if unit.corrupt() => error(StatusCode::INTERNAL_SERVER_ERROR, ""),
        Some(_) => {
            state.registry.units.remove(name);
            state.registry.overrides.remove(name);
            state.registry.schedule();
            empty(StatusCode::NO_CONTENT)
        }
    }
}

/// fleet's `unitsResource.set`, step by step.
fn put_unit(
    state: &mut State,
    item: &str,
    content_types: &[String],
    body: &[u8],
) -> Response<Full<Bytes>> {
    if content_types.len() != 1 {
        let message = format!("expected 1 Content-Type, got {}", content_types.len());
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, &message);
    }
    let media_type = content_types[0].split(';').next().unwrap_or("").trim();
    if media_type != "application/json" {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only acceptable Content-Type is application/json",
        );
    }
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unable to decode body: not an object",
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unable to decode body: {e}"),
            );
        }
    };
    let name = parsed
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(item);
    if name != item {
        let message =
            format!("name in URL {item:?} differs from unit name in request body {name:?}");
        return error(StatusCode::BAD_REQUEST, &message);
    }
    if let Err(message) = validate_name(name) {
        return error(StatusCode::BAD_REQUEST, &message);
    }
    let options: Vec<UnitOption> = match parsed.get("options") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => match serde_json::from_value(value.clone()) {
            Ok(options) => options,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("unable to decode body: {e}"),
                );
            }
        },
    };
    let desired = parsed
        .get("desiredState")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let existing = state.registry.units.get(name).cloned();
    if existing.as_ref().is_some_and(StoredUnit::corrupt) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "");
    }
    let is_new = match &existing {
        None if options.is_empty() => {
            return error(
                StatusCode::CONFLICT,
                "unit does not exist and options field empty",
            );
        }
        None => true,
        Some(unit) => !options.is_empty() && unit.options != options,
    };
    let activates_template = is_template(name) && !desired.is_empty() && desired != "inactive";
    if is_new {
        if let Err(message) = Requirements::of(name, &options).validate() {
            return error(StatusCode::BAD_REQUEST, &message);
        }
        if activates_template {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot activate template {name:?}"),
            );
        }
        // fleet parses the state of a new unit (and fails with an empty 500).
        let desired = if desired.is_empty() {
            "inactive".to_owned()
        } else {
            desired
        };
        if !matches!(desired.as_str(), "inactive" | "loaded" | "launched") {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "");
        }
        state.registry.units.insert(
            name.to_owned(),
            StoredUnit {
                options,
                desired,
                machine: None,
            },
        );
        state.registry.overrides.remove(name);
        state.registry.schedule();
        return empty(StatusCode::CREATED);
    }
    if desired.is_empty() {
        return error(
            StatusCode::CONFLICT,
            "must provide DesiredState to update existing unit",
        );
    }
    if activates_template {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("cannot activate template {name:?}"),
        );
    }
    // Not validated, as in fleet: a bogus value corrupts the unit.
    if let Some(unit) = state.registry.units.get_mut(name) {
        unit.desired = desired;
    }
    state.registry.schedule();
    empty(StatusCode::NO_CONTENT)
}

fn list_units(state: &State, query: &[(String, String)]) -> Response<Full<Bytes>> {
    let all: Vec<Value> = state
        .registry
        .units
        .iter()
        .filter(|(_, unit)| !unit.corrupt())
        .map(|(name, unit)| state.registry.unit_json(name, unit))
        .collect();
    page_response(state.page_size, query, "units", all)
}

fn list_states(state: &State, query: &[(String, String)]) -> Response<Full<Bytes>> {
    let machine = query
        .iter()
        .find(|(k, _)| k == "machineID")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let unit = query
        .iter()
        .find(|(k, _)| k == "unitName")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let all: Vec<Value> = state
        .registry
        .states()
        .into_iter()
        .filter(|s| {
            (machine.is_empty() || s.machine_id == machine) && (unit.is_empty() || s.name == unit)
        })
        .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
        .collect();
    page_response(state.page_size, query, "states", all)
}

fn list_machines(state: &State, query: &[(String, String)]) -> Response<Full<Bytes>> {
    let all: Vec<Value> = state
        .registry
        .machines_json()
        .into_iter()
        .map(|m| {
            let mut json = json!({"id": m.id, "primaryIP": m.primary_ip});
            if !m.metadata.is_empty() {
                json["metadata"] = json!(m.metadata);
            }
            json
        })
        .collect();
    page_response(state.page_size, query, "machines", all)
}

/// fleet's paging: page N of `limit` items; a token whenever the page is
/// full (so a full last page leads to `{}`); keys left out when empty.
fn page_response(
    limit: u16,
    query: &[(String, String)],
    key: &str,
    all: Vec<Value>,
) -> Response<Full<Bytes>> {
    let tokens: Vec<&String> = query
        .iter()
        .filter(|(k, _)| k == "nextPageToken")
        .map(|(_, v)| v)
        .collect();
    let page = match tokens.as_slice() {
        [] => 1,
        [token] => match decode_page_token(token, limit) {
            Ok(page) => page,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        },
        _ => return error(StatusCode::BAD_REQUEST, "too many values for page token"),
    };
    let start = usize::from(page - 1) * usize::from(limit);
    let stop = usize::from(page) * usize::from(limit);
    let mut body = serde_json::Map::new();
    if start < all.len() {
        let items = if stop > all.len() {
            all[start..].to_vec()
        } else {
            body.insert(
                "nextPageToken".into(),
                Value::String(encode_page_token(limit, page + 1)),
            );
            all[start..stop].to_vec()
        };
        body.insert(key.into(), Value::Array(items));
    }
    respond(StatusCode::OK, &Value::Object(body))
}

/// fleet's `PageToken`: limit and page as little-endian u16s, base64url.
fn encode_page_token(limit: u16, page: u16) -> String {
    let mut bytes = limit.to_le_bytes().to_vec();
    bytes.extend(page.to_le_bytes());
    PAGE_TOKEN.encode(bytes)
}

fn decode_page_token(token: &str, limit: u16) -> Result<u16, String> {
    let bytes = PAGE_TOKEN.decode(token).map_err(|e| e.to_string())?;
    let [l0, l1, p0, p1] = bytes[..] else {
        return Err("unexpected EOF".to_owned());
    };
    if u16::from_le_bytes([l0, l1]) != limit {
        return Err(format!("token limit must be {limit}"));
    }
    let page = u16::from_le_bytes([p0, p1]);
    if page == 0 {
        return Err("token page must be greater than zero".to_owned());
    }
    Ok(page)
}

/// fleet's `ValidateName` (systemd's rules).
fn validate_name(name: &str) -> Result<(), String> {
    const TYPES: [&str; 13] = [
        "service",
        "socket",
        "busname",
        "target",
        "snapshot",
        "device",
        "mount",
        "automount",
        "swap",
        "timer",
        "path",
        "slice",
        "scope",
    ];
    if name.is_empty() {
        return Err("unit name cannot be empty".into());
    }
    if name.len() > 256 {
        return Err("unit name exceeds maximum length (256)".into());
    }
    let Some((stem, suffix)) = name.rsplit_once('.') else {
        return Err("unit name must contain \".\"".into());
    };
    if suffix.is_empty() {
        return Err("unit name cannot end in \".\"".into());
    }
    if !TYPES.contains(&suffix) {
        return Err(format!("invalid unit type: {suffix:?}"));
    }
    if let Some(bad) = stem
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":-_.\\@".contains(*c)))
    {
        return Err(format!("invalid character {bad:?} in unit name"));
    }
    if name.starts_with('@') {
        return Err("unit name cannot start in \"@\"".into());
    }
    Ok(())
}

fn respond<T: serde::Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::SERVER,
        header::HeaderValue::from_static("nap-fleet-fake"),
    );
    response
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::SERVER,
        header::HeaderValue::from_static("nap-fleet-fake"),
    );
    response
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message}}),
    )
}

pub(super) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(key),
                percent_decode(&value.replace('+', " ")),
            )
        })
        .collect()
}

pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_tokens_are_fleets() {
        // fleet's token for {Limit: 100, Page: 2}.
        assert_eq!(super::encode_page_token(100, 2), "ZAACAA==");
        assert_eq!(super::decode_page_token("ZAACAA==", 100), Ok(2));
        assert!(super::decode_page_token("ZAACAA==", 2).is_err());
        assert!(super::decode_page_token("ZAAAAA==", 100).is_err());
    }
}
