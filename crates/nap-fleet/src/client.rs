//! A client of fleet's HTTP API v1 (`/fleet/v1/`), as `fleetctl --endpoint`
//! talks to it. What fleet does that a client must know is in
//! `shared/FLEET.md`; each fact is honoured where the comment says so.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::transport::{Endpoint, Reply, TransportError};
use crate::unit::{DesiredState, UnitOption, is_template, template_of};

/// A unit as fleet's API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unit {
    /// `web@v3-1-20001.service`.
    pub name: String,
    /// The unit file.
    #[serde(default)]
    pub options: Vec<UnitOption>,
    /// What fleet is asked to make of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<DesiredState>,
    /// What fleet has made of it so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_state: Option<DesiredState>,
    /// The machine it is scheduled to; absent while unscheduled.
    #[serde(default, rename = "machineID", skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
}

/// A unit's systemd state on its machine, as fleet's agents report it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitState {
    /// The unit.
    #[serde(default)]
    pub name: String,
    /// Where it is.
    #[serde(default, rename = "machineID")]
    pub machine_id: String,
    /// The unit file's hash.
    #[serde(default)]
    pub hash: String,
    /// `loaded`, `not-found`, …
    #[serde(default)]
    pub systemd_load_state: String,
    /// `active`, `activating`, `failed`, `inactive`, …
    #[serde(default)]
    pub systemd_active_state: String,
    /// `running`, `auto-restart`, `dead`, …
    #[serde(default)]
    pub systemd_sub_state: String,
}

/// A machine of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// fleet's machine id (systemd's machine-id).
    #[serde(default)]
    pub id: String,
    /// The address fleet knows it by.
    #[serde(default, rename = "primaryIP")]
    pub primary_ip: String,
    /// Labels for `MachineMetadata=`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// One page of a collection, with the token of the next page if fleet gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// This page's items; empty for fleet's `{}`.
    pub items: Vec<T>,
    /// Opaque; fleet gives one after every full page, even the last.
    pub next_page_token: Option<String>,
}

/// Which unit states to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateFilter {
    /// Only this machine's.
    pub machine_id: Option<String>,
    /// Only this unit's.
    pub unit_name: Option<String>,
}

/// How often to ask again while fleet answers 503 (its machine has not
/// registered in etcd yet) or cannot be connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each.
    pub first_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, 100 ms doubling to 2 s: about 7 s in all.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 8,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// What [`FleetClient::submit_template`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateChange {
    /// fleet had it already, with the same options.
    Unchanged,
    /// Stored (new, or replacing other options).
    Stored,
}

/// What went wrong talking to fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The endpoint is not `http://host:port` or `unix:///path`.
    #[error("invalid fleet endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// As given.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// No answer (after retries, where a retry was safe).
    #[error("cannot talk to fleet at {endpoint} ({method} {path}): {detail}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// The request.
        method: Method,
        /// Its path.
        path: String,
        /// Why.
        detail: String,
    },
    /// fleet kept answering 503, usually "fleet server unable to
    /// communicate with etcd" before its machine has registered.
    #[error(
        "fleet at {endpoint} is unavailable ({method} {path}: 503 {message}) after {attempts} attempts"
    )]
    Unavailable {
        /// The endpoint.
        endpoint: String,
        /// The request.
        method: Method,
        /// Its path.
        path: String,
        /// fleet's message.
        message: String,
        /// How many times it was asked.
        attempts: u32,
    },
    /// fleet said no.
    #[error(
        "fleet at {endpoint} refused {method} {path}: {status} {}",
        or_no_message(message)
    )]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// The request.
        method: Method,
        /// Its path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// fleet's `error.message` (may be empty: fleet's internal errors have none).
        message: String,
    },
    /// An answer that is not fleet's JSON.
    #[error(
        "fleet at {endpoint} answered {method} {path} with {status} and a body that is not fleet's JSON ({detail})"
    )]
    Garbled {
        /// The endpoint.
        endpoint: String,
        /// The request.
        method: Method,
        /// Its path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// What did not parse.
        detail: String,
    },
    /// An instance was asked for whose template is not in fleet.
    #[error("template {template} is not in fleet at {endpoint}; submit it before its instances")]
    NoTemplate {
        /// The endpoint.
        endpoint: String,
        /// The template's name.
        template: String,
    },
    /// A unit name that cannot be used for what was asked.
    #[error("{name}: {reason}")]
    BadName {
        /// The unit.
        name: String,
        /// Why.
        reason: &'static str,
    },
}

fn or_no_message(message: &str) -> &str {
    if message.is_empty() {
        "(fleet gave no message)"
    } else {
        message
    }
}

impl FleetError {
    /// The HTTP status fleet answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            FleetError::Refused { status, .. } | FleetError::Garbled { status, .. } => {
                Some(*status)
            }
            FleetError::Unavailable { .. } => Some(503),
            _ => None,
        }
    }

    /// fleet's message, if it gave one.
    pub fn message(&self) -> Option<&str> {
        match self {
            FleetError::Refused { message, .. } | FleetError::Unavailable { message, .. } => {
                Some(message)
            }
            _ => None,
        }
    }
}

/// fleet's error body: `{"error":{"code":N,"message":"…"}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorEntity,
}

#[derive(Deserialize)]
struct ErrorEntity {
    #[serde(default)]
    #[allow(
        dead_code,
        reason = "fleet repeats the HTTP status here; the status line is what counts"
    )]
    code: u16,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnitPage {
    // FLEET.md: an empty collection is `{}`, without the key.
    #[serde(default)]
    units: Vec<Unit>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatePage {
    #[serde(default)]
    states: Vec<UnitState>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MachinePage {
    #[serde(default)]
    machines: Vec<Machine>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// The body of a `PUT /fleet/v1/units/NAME`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PutUnit<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<&'a [UnitOption]>,
    desired_state: DesiredState,
}

/// More pages than this means a server that hands out tokens forever.
const MAX_PAGES: usize = 10_000;

/// A client of one fleet API endpoint.
#[derive(Debug, Clone)]
pub struct FleetClient {
    endpoint: Endpoint,
    retry: RetryPolicy,
    timeout: Duration,
}

impl FleetClient {
    /// A client of `endpoint`: `http://host:port` or `unix:///path`.
    pub fn new(endpoint: &str) -> Result<FleetClient, FleetError> {
        let parsed = Endpoint::parse(endpoint).map_err(|reason| FleetError::Endpoint {
            endpoint: endpoint.to_owned(),
            reason,
        })?;
        Ok(FleetClient {
            endpoint: parsed,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
        })
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> FleetClient {
        self.retry = retry;
        self
    }

    /// The same client with another per-request timeout (30 s by default).
    pub fn with_timeout(mut self, timeout: Duration) -> FleetClient {
        self.timeout = timeout;
        self
    }

    /// The endpoint, as `fleetctl --endpoint` would take it.
    pub fn endpoint(&self) -> String {
        self.endpoint.to_string()
    }

    /// Every unit (every page).
    pub async fn units(&self) -> Result<Vec<Unit>, FleetError> {
        self.all_pages(
            |token: Option<String>| async move { self.units_page(token.as_deref()).await },
        )
        .await
    }

    /// One page of units.
    pub async fn units_page(&self, token: Option<&str>) -> Result<Page<Unit>, FleetError> {
        let page: UnitPage = self.get_json(&with_token("/fleet/v1/units", token)).await?;
        Ok(Page {
            items: page.units,
            next_page_token: nonempty(page.next_page_token),
        })
    }

    /// One unit, or `None` if fleet does not have it.
    pub async fn unit(&self, name: &str) -> Result<Option<Unit>, FleetError> {
        let path = unit_path(name);
        let reply = self.send(Method::GET, &path, None).await?;
        match reply.status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => self.decode(Method::GET, &path, &reply).map(Some),
            _ => Err(self.refused(Method::GET, &path, &reply)),
        }
    }

    /// Stores a unit with `options` in `desired` state (201), replacing a
    /// unit of that name with other options. fleet refuses to create a unit
    /// without options (409), so there must be some.
    pub async fn create_unit(
        &self,
        name: &str,
        options: &[UnitOption],
        desired: DesiredState,
    ) -> Result<(), FleetError> {
        if options.is_empty() {
            return Err(FleetError::BadName {
                name: name.to_owned(),
                reason: "a new unit needs options",
            });
        }
        self.put_unit(&PutUnit {
            name,
            options: Some(options),
            desired_state: desired,
        })
        .await
    }

    /// Sets an existing unit's desired state (204). The state is typed, so
    /// nothing but `inactive`, `loaded` or `launched` is ever sent: fleet
    /// stores anything else and the unit is broken from then on.
    pub async fn set_desired_state(
        &self,
        name: &str,
        desired: DesiredState,
    ) -> Result<(), FleetError> {
        self.put_unit(&PutUnit {
            name,
            options: None,
            desired_state: desired,
        })
        .await
    }

    /// Stops and removes a unit. `Ok(false)` if fleet did not have it
    /// (404: already gone, as after a retried DELETE).
    pub async fn destroy_unit(&self, name: &str) -> Result<bool, FleetError> {
        let path = unit_path(name);
        let reply = self.send(Method::DELETE, &path, None).await?;
        match reply.status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.refused(Method::DELETE, &path, &reply)),
        }
    }

    /// Stores a template (`NAME@.TYPE`) inactive, unless fleet already has
    /// it with these options. fleet refuses to activate templates; their
    /// instances are made by the client ([`FleetClient::launch_instance`]).
    pub async fn submit_template(
        &self,
        name: &str,
        options: &[UnitOption],
    ) -> Result<TemplateChange, FleetError> {
        if !is_template(name) {
            return Err(FleetError::BadName {
                name: name.to_owned(),
                reason: "not a template (NAME@.TYPE)",
            });
        }
        if let Some(existing) = self.unit(name).await?
            && existing.options == options
        {
            return Ok(TemplateChange::Unchanged);
        }
        self.create_unit(name, options, DesiredState::Inactive)
            .await?;
        Ok(TemplateChange::Stored)
    }

    /// Expands a template the way fleetctl does, on the client: GETs
    /// `NAME@.TYPE` and PUTs `instance` (`NAME@INSTANCE.TYPE`) with the
    /// template's options in `desired` state. Returns the unit as sent.
    pub async fn launch_instance(
        &self,
        instance: &str,
        desired: DesiredState,
    ) -> Result<Unit, FleetError> {
        let Some(template) = template_of(instance) else {
            return Err(FleetError::BadName {
                name: instance.to_owned(),
                reason: "not an instance of a template",
            });
        };
        let Some(template_unit) = self.unit(&template).await? else {
            return Err(FleetError::NoTemplate {
                endpoint: self.endpoint(),
                template,
            });
        };
        self.create_unit(instance, &template_unit.options, desired)
            .await?;
        Ok(Unit {
            name: instance.to_owned(),
            options: template_unit.options,
            desired_state: Some(desired),
            current_state: None,
            machine_id: None,
        })
    }

    /// Unit states (every page).
    pub async fn states(&self, filter: &StateFilter) -> Result<Vec<UnitState>, FleetError> {
        self.all_pages(|token: Option<String>| async move {
            self.states_page(filter, token.as_deref()).await
        })
        .await
    }

    /// One page of unit states.
    pub async fn states_page(
        &self,
        filter: &StateFilter,
        token: Option<&str>,
    ) -> Result<Page<UnitState>, FleetError> {
        let mut query = Vec::new();
        if let Some(machine) = &filter.machine_id {
            query.push(format!("machineID={}", percent_encode(machine)));
        }
        if let Some(unit) = &filter.unit_name {
            query.push(format!("unitName={}", percent_encode(unit)));
        }
        if let Some(token) = token {
            query.push(format!("nextPageToken={}", percent_encode(token)));
        }
        let path = if query.is_empty() {
            "/fleet/v1/state".to_owned()
        } else {
            format!("/fleet/v1/state?{}", query.join("&"))
        };
        let page: StatePage = self.get_json(&path).await?;
        Ok(Page {
            items: page.states,
            next_page_token: nonempty(page.next_page_token),
        })
    }

    /// The machines of the cluster (every page).
    pub async fn machines(&self) -> Result<Vec<Machine>, FleetError> {
        self.all_pages(
            |token: Option<String>| async move { self.machines_page(token.as_deref()).await },
        )
        .await
    }

    /// One page of machines.
    pub async fn machines_page(&self, token: Option<&str>) -> Result<Page<Machine>, FleetError> {
        let page: MachinePage = self
            .get_json(&with_token("/fleet/v1/machines", token))
            .await?;
        Ok(Page {
            items: page.machines,
            next_page_token: nonempty(page.next_page_token),
        })
    }

    async fn all_pages<T, F, Fut>(&self, mut page: F) -> Result<Vec<T>, FleetError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<Page<T>, FleetError>>,
    {
        // FLEET.md: a full last page still carries a token, which leads to
        // `{}`; so the end is a page without a token or an empty page.
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let this = page(token.take()).await?;
            let empty = this.items.is_empty();
            items.extend(this.items);
            match this.next_page_token {
                Some(next) if !empty => token = Some(next),
                _ => return Ok(items),
            }
        }
        Ok(items)
    }

    async fn put_unit(&self, body: &PutUnit<'_>) -> Result<(), FleetError> {
        let path = unit_path(body.name);
        let json = serde_json::to_vec(body)
            .expect("a unit is strings and lists of strings, which always encode");
        let reply = self.send(Method::PUT, &path, Some(json)).await?;
        match reply.status {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            _ => Err(self.refused(Method::PUT, &path, &reply)),
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, FleetError> {
        let reply = self.send(Method::GET, path, None).await?;
        if reply.status != StatusCode::OK {
            return Err(self.refused(Method::GET, path, &reply));
        }
        self.decode(Method::GET, path, &reply)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        reply: &Reply,
    ) -> Result<T, FleetError> {
        serde_json::from_slice(&reply.body).map_err(|e| FleetError::Garbled {
            endpoint: self.endpoint(),
            method,
            path: path.to_owned(),
            status: reply.status.as_u16(),
            detail: format!("{e}: {}", reply.text_excerpt()),
        })
    }

    fn refused(&self, method: Method, path: &str, reply: &Reply) -> FleetError {
        // FLEET.md: errors are `{"error":{"code","message"}}`; internal
        // errors may come with an empty message.
        let message = match serde_json::from_slice::<ErrorBody>(&reply.body) {
            Ok(body) => body.error.message,
            Err(_) => reply.text_excerpt(),
        };
        FleetError::Refused {
            endpoint: self.endpoint(),
            method,
            path: path.to_owned(),
            status: reply.status.as_u16(),
            message,
        }
    }

    /// Sends a request; retries with backoff while fleet answers 503 or
    /// cannot be connected to (both mean nothing was done).
    async fn send(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<Reply, FleetError> {
        let attempts = self.retry.attempts.max(1);
        let mut delay = self.retry.first_delay;
        for attempt in 1..=attempts {
            let last = attempt == attempts;
            match self
                .endpoint
                .request(method.clone(), path, json.clone(), self.timeout)
                .await
            {
                Ok(reply) if reply.status == StatusCode::SERVICE_UNAVAILABLE => {
                    if last {
                        let message = match serde_json::from_slice::<ErrorBody>(&reply.body) {
                            Ok(body) => body.error.message,
                            Err(_) => reply.text_excerpt(),
                        };
                        return Err(FleetError::Unavailable {
                            endpoint: self.endpoint(),
                            method,
                            path: path.to_owned(),
                            message,
                            attempts,
                        });
                    }
                    tracing::debug!(endpoint = %self.endpoint, %method, path, attempt, "fleet answered 503; retrying");
                }
                Ok(reply) => return Ok(reply),
                Err(e) if e.nothing_sent() && !last => {
                    tracing::debug!(endpoint = %self.endpoint, %method, path, attempt, error = %e, "retrying");
                }
                Err(e) => return Err(self.unreachable(method, path, &e)),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.retry.max_delay);
        }
        Err(FleetError::Unreachable {
            endpoint: self.endpoint(),
            method,
            path: path.to_owned(),
            detail: "no attempt was made".to_owned(),
        })
    }

    fn unreachable(&self, method: Method, path: &str, error: &TransportError) -> FleetError {
        FleetError::Unreachable {
            endpoint: self.endpoint(),
            method,
            path: path.to_owned(),
            detail: error.to_string(),
        }
    }
}

fn unit_path(name: &str) -> String {
    format!("/fleet/v1/units/{}", percent_encode(name))
}

fn with_token(path: &str, token: Option<&str>) -> String {
    match token {
        Some(token) => format!("{path}?nextPageToken={}", percent_encode(token)),
        None => path.to_owned(),
    }
}

fn nonempty(token: Option<String>) -> Option<String> {
    token.filter(|t| !t.is_empty())
}

/// Percent-encodes everything but unreserved characters and the few that
/// unit names use (`@`, `:`), so names and tokens pass through unchanged.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~@:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
