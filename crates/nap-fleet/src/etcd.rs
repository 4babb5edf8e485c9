//! A small client of etcd's v3 API through its JSON gateway (HTTP, keys and
//! values in base64): what nap needs to read and write instance addresses.
//!
//! etcd 3.4 and later serve the gateway at `/v3/`, 3.3 at `/v3beta/`, 3.2
//! at `/v3alpha/`; the client asks `/version` once and picks the prefix.
//! The v2 keys API is not used: 3.4 serves it only with `--enable-v2`, and
//! 3.6 has none.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::transport::{Endpoint, Reply};
use crate::unit::etcd_prefix;

/// Where every app's keys live: `/nap/apps/APP/instances/INSTANCE`.
const APPS_PREFIX: &str = "/nap/apps/";

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// An endpoint that is not `http://host:port`.
    #[error("invalid etcd endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// As given.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// No endpoint given.
    #[error("no etcd endpoint configured")]
    NoEndpoints,
    /// No endpoint answered.
    #[error("cannot talk to etcd ({path}): {detail}")]
    Unreachable {
        /// The API path.
        path: String,
        /// What each endpoint said.
        detail: String,
    },
    /// etcd said no.
    #[error("etcd at {endpoint} refused {path}: {status} {message}")]
    Refused {
        /// The endpoint that answered.
        endpoint: String,
        /// The API path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// etcd's message.
        message: String,
    },
    /// An answer that is not the gateway's JSON.
    #[error("etcd at {endpoint} answered {path} with something unexpected: {detail}")]
    Garbled {
        /// The endpoint that answered.
        endpoint: String,
        /// The API path.
        path: String,
        /// What did not fit.
        detail: String,
    },
    /// An etcd without a v3 JSON gateway.
    #[error("etcd {version} at {endpoint} has no v3 JSON gateway nap knows (3.2 or later needed)")]
    Unsupported {
        /// The endpoint.
        endpoint: String,
        /// Its version.
        version: String,
    },
}

/// A lease: keys put with it vanish when it expires or is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// etcd's id.
    pub id: i64,
    /// The time it lives without a keep-alive.
    pub ttl: Duration,
}

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// The lease it is attached to, if any.
    pub lease: Option<i64>,
}

/// A client of an etcd cluster (any of its endpoints).
#[derive(Debug)]
pub struct EtcdClient {
    endpoints: Vec<Endpoint>,
    api: tokio::sync::OnceCell<String>,
    timeout: Duration,
}

impl EtcdClient {
    /// A client of `endpoints` (`http://host:port`, tried in order).
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Result<EtcdClient, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        let mut parsed = Vec::new();
        for endpoint in endpoints {
            let endpoint = endpoint.as_ref();
            match Endpoint::parse(endpoint) {
                Ok(e @ Endpoint::Http { .. }) => parsed.push(e),
                Ok(Endpoint::Unix { .. }) => {
                    return Err(EtcdError::Endpoint {
                        endpoint: endpoint.to_owned(),
                        reason: "etcd is reached over http://".to_owned(),
                    });
                }
                Err(reason) => {
                    return Err(EtcdError::Endpoint {
                        endpoint: endpoint.to_owned(),
                        reason,
                    });
                }
            }
        }
        Ok(EtcdClient {
            endpoints: parsed,
            api: tokio::sync::OnceCell::new(),
            timeout: Duration::from_secs(10),
        })
    }

    /// The endpoints, comma-separated, as the sidekick takes them.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.iter().map(ToString::to_string).collect()
    }

    /// The server's version, e.g. `3.4.23`.
    pub async fn version(&self) -> Result<String, EtcdError> {
        let (endpoint, reply) = self.send(Method::GET, "/version", None).await?;
        let body = parse_reply(&endpoint, "/version", &reply)?;
        match body.get("etcdserver").and_then(Value::as_str) {
            Some(version) => Ok(version.to_owned()),
            None => Err(garbled(&endpoint, "/version", "no etcdserver field")),
        }
    }

    /// The JSON gateway's prefix for this server: `/v3`, `/v3beta` or `/v3alpha`.
    pub async fn api_prefix(&self) -> Result<String, EtcdError> {
        self.api
            .get_or_try_init(|| async {
                let version = self.version().await?;
                let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                match (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) {
                    (3, 0..=1) | (0..=2, _) => Err(EtcdError::Unsupported {
                        endpoint: self
                            .endpoints
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                        version,
                    }),
                    (3, 2) => Ok("/v3alpha".to_owned()),
                    (3, 3) => Ok("/v3beta".to_owned()),
                    _ => Ok("/v3".to_owned()),
                }
            })
            .await
            .cloned()
    }

    /// Puts `key` = `value`, attached to `lease` if given.
    pub async fn put(&self, key: &str, value: &str, lease: Option<i64>) -> Result<(), EtcdError> {
        let mut body = json!({"key": BASE64.encode(key), "value": BASE64.encode(value)});
        if let Some(lease) = lease {
            body["lease"] = Value::String(lease.to_string());
        }
        self.call("/kv/put", body).await.map(drop)
    }

    /// The value of `key`.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let found = self
            .range(json!({"key": BASE64.encode(key)}), "/kv/range")
            .await?;
        Ok(found.into_iter().next())
    }

    /// Every key that starts with `prefix`, in key order.
    pub async fn range_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>, EtcdError> {
        let body = json!({"key": BASE64.encode(prefix), "range_end": BASE64.encode(prefix_end(prefix.as_bytes()))});
        self.range(body, "/kv/range").await
    }

    /// Deletes `key`; returns how many keys went (0 or 1).
    pub async fn delete(&self, key: &str) -> Result<u64, EtcdError> {
        let reply = self
            .call("/kv/deleterange", json!({"key": BASE64.encode(key)}))
            .await?;
        Ok(int_field(&reply, "deleted")
            .unwrap_or(0)
            .try_into()
            .unwrap_or(0))
    }

    /// Deletes every key under `prefix`; returns how many went.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, EtcdError> {
        let body = json!({"key": BASE64.encode(prefix), "range_end": BASE64.encode(prefix_end(prefix.as_bytes()))});
        let reply = self.call("/kv/deleterange", body).await?;
        Ok(int_field(&reply, "deleted")
            .unwrap_or(0)
            .try_into()
            .unwrap_or(0))
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1).
    pub async fn grant(&self, ttl: Duration) -> Result<Lease, EtcdError> {
        let reply = self
            .call("/lease/grant", json!({"TTL": ttl.as_secs().max(1)}))
            .await?;
        let (Some(id), Some(ttl)) = (int_field(&reply, "ID"), int_field(&reply, "TTL")) else {
            return Err(garbled(&self.endpoints[0], "/lease/grant", "no ID or TTL"));
        };
        Ok(Lease {
            id,
            ttl: Duration::from_secs(ttl.try_into().unwrap_or(0)),
        })
    }

    /// Refreshes a lease once; `None` if it is gone (expired or revoked).
    pub async fn keep_alive(&self, lease: i64) -> Result<Option<Duration>, EtcdError> {
        // The gateway streams keep-alives; one request body gets one answer,
        // wrapped in `result`.
        let reply = self
            .call("/lease/keepalive", json!({"ID": lease.to_string()}))
            .await?;
        let result = reply.get("result").unwrap_or(&reply);
        Ok(int_field(result, "TTL")
            .filter(|ttl| *ttl > 0)
            .map(|ttl| Duration::from_secs(ttl.unsigned_abs())))
    }

    /// Revokes a lease: its keys go at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/kv/lease/revoke", json!({"ID": lease.to_string()}))
            .await
            .map(drop)
    }

    /// Where an app's instances serve, as their discovery sidekicks
    /// registered them under `/nap/apps/APP/instances/`. Values that are not
    /// `host:port` addresses are skipped (and logged).
    pub async fn instances(&self, app: &str) -> Result<Vec<SocketAddr>, EtcdError> {
        let mut addresses = Vec::new();
        for kv in self.range_prefix(&etcd_prefix(app)).await? {
            match kv.value.parse::<SocketAddr>() {
                Ok(address) => addresses.push(address),
                Err(_) => {
                    tracing::warn!(app, key = %kv.key, value = %kv.value, "etcd value is not an address")
                }
            }
        }
        Ok(addresses)
    }

    /// Where every app's instances serve, by app, as the sidekicks registered them under
    /// `/nap/apps/APP/instances/` (in the order of their keys). Values that are not
    /// `host:port` addresses are skipped (and logged).
    pub async fn all_instances(&self) -> Result<BTreeMap<String, Vec<SocketAddr>>, EtcdError> {
        let mut by_app: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
        for kv in self.range_prefix(APPS_PREFIX).await? {
            let app = kv
                .key
                .strip_prefix(APPS_PREFIX)
                .and_then(|rest| rest.split_once("/instances/"))
                .map(|(app, _)| app);
            match (app, kv.value.parse::<SocketAddr>()) {
                (Some(app), Ok(address)) => by_app.entry(app.to_owned()).or_default().push(address),
                _ => {
                    tracing::warn!(key = %kv.key, value = %kv.value, "etcd key is not an instance address")
                }
            }
        }
        Ok(by_app)
    }

    async fn range(&self, body: Value, path: &str) -> Result<Vec<KeyValue>, EtcdError> {
        let reply = self.call(path, body).await?;
        // An empty range has no `kvs` key at all.
        let Some(kvs) = reply.get("kvs").and_then(Value::as_array) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for kv in kvs {
            let decode = |field: &str| {
                let text = kv.get(field).and_then(Value::as_str).unwrap_or("");
                BASE64
                    .decode(text)
                    .ok()
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            };
            let (Some(key), Some(value)) = (decode("key"), decode("value")) else {
                return Err(garbled(
                    &self.endpoints[0],
                    path,
                    "a key or value that is not base64",
                ));
            };
            found.push(KeyValue {
                key,
                value,
                lease: int_field(kv, "lease").filter(|l| *l != 0),
            });
        }
        Ok(found)
    }

    /// POSTs to the gateway (prefix added) and returns the JSON answer.
    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let full = format!("{}{path}", self.api_prefix().await?);
        let (endpoint, reply) = self
            .send(Method::POST, &full, Some(body.to_string().into_bytes()))
            .await?;
        parse_reply(&endpoint, &full, &reply)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(Endpoint, Reply), EtcdError> {
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            match endpoint
                .request(method.clone(), path, body.clone(), self.timeout)
                .await
            {
                Ok(reply) => return Ok((endpoint.clone(), reply)),
                Err(e) => failures.push(format!("{endpoint}: {e}")),
            }
        }
        Err(EtcdError::Unreachable {
            path: path.to_owned(),
            detail: failures.join("; "),
        })
    }
}

fn parse_reply(endpoint: &Endpoint, path: &str, reply: &Reply) -> Result<Value, EtcdError> {
    let body: Option<Value> = serde_json::from_slice(&reply.body).ok();
    if reply.status != StatusCode::OK {
        // The gateway's errors: `{"error":"…","message":"…","code":N}`.
        let message = body
            .as_ref()
            .and_then(|b| b.get("message").or_else(|| b.get("error")))
            .and_then(Value::as_str)
            .map_or_else(|| reply.text_excerpt(), str::to_owned);
        return Err(EtcdError::Refused {
            endpoint: endpoint.to_string(),
            path: path.to_owned(),
            status: reply.status.as_u16(),
            message,
        });
    }
    body.ok_or_else(|| {
        garbled(
            endpoint,
            path,
            &format!("not JSON: {}", reply.text_excerpt()),
        )
    })
}

fn garbled(endpoint: &Endpoint, path: &str, detail: &str) -> EtcdError {
    EtcdError::Garbled {
        endpoint: endpoint.to_string(),
        path: path.to_owned(),
        detail: detail.to_owned(),
    }
}

/// The gateway writes 64-bit integers as strings.
fn int_field(value: &Value, field: &str) -> Option<i64> {
    match value.get(field)? {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.as_i64(),
        _ => None,
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the keyspace.
    vec![0]
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_ends() {
        assert_eq!(super::prefix_end(b"/nap/"), b"/nap0".to_vec());
        assert_eq!(super::prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(super::prefix_end(&[]), vec![0]);
    }
}
