//! The fake backend and a real server on 127.0.0.1 around it.
//!
//! The fake answers the commands in the formats the daemon prints (see the
//! crate docs of `nap-web`), keeps a little state so that `scale` changes
//! what `ps` and `apps` say, and records every call.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use nap_web::{Backend, BoxFuture, Chunk, Denied, Options, User};
use serde_json::json;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

pub const ALICE: &str = "nap_alice_token";
pub const BOB: &str = "nap_bob_token";
pub const ROOT: &str = "nap_root_token";

pub struct FakeApp {
    pub owner: String,
    pub instances: u32,
    pub logs: Vec<String>,
}

#[derive(Default)]
pub struct State {
    pub tokens: HashMap<String, User>,
    pub apps: BTreeMap<String, FakeApp>,
    /// Every `run`: the user and the command line.
    pub runs: Vec<(String, Vec<String>)>,
    /// Each app's custom hosts (`domains:add` adds, `domains` lists).
    pub domains: BTreeMap<String, Vec<String>>,
    /// Every `access`: user, app, write.
    pub accesses: Vec<(String, String, bool)>,
}

/// The fake; clones share their state.
#[derive(Clone, Default)]
pub struct Fake {
    pub state: Arc<Mutex<State>>,
    /// When set, `clone` prints its first line and then waits here.
    pub gate: Option<Arc<Notify>>,
}

fn user(name: &str, admin: bool) -> User {
    User {
        name: name.to_owned(),
        admin,
    }
}

impl Fake {
    /// alice owns `web` (1 instance), bob owns `secret`, root is an admin.
    pub fn new() -> Fake {
        let fake = Fake::default();
        {
            let mut state = fake.state();
            state.tokens.insert(ALICE.into(), user("alice", false));
            state.tokens.insert(BOB.into(), user("bob", false));
            state.tokens.insert(ROOT.into(), user("root", true));
        }
        fake.add_app(
            "web",
            "alice",
            1,
            &["Serving HTTP on 0.0.0.0 port 20001", "GET / 200"],
        );
        fake.add_app("secret", "bob", 2, &["bob's secret log line"]);
        fake
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake state")
    }

    pub fn add_app(&self, name: &str, owner: &str, instances: u32, logs: &[&str]) {
        let logs = logs.iter().map(|line| (*line).to_owned()).collect();
        self.state().apps.insert(
            name.to_owned(),
            FakeApp {
                owner: owner.to_owned(),
                instances,
                logs,
            },
        );
    }

    pub fn revoke(&self, token: &str) {
        self.state().tokens.remove(token);
    }

    /// The command lines run so far, with their users.
    pub fn runs(&self) -> Vec<(String, Vec<String>)> {
        self.state().runs.clone()
    }

    /// Command lines that change something (not the reads behind pages).
    pub fn actions(&self) -> Vec<(String, Vec<String>)> {
        let reads = ["apps", "ps", "releases", "logs", "domains"];
        self.runs()
            .into_iter()
            .filter(|(_, line)| !reads.contains(&line[0].as_str()))
            .collect()
    }

    pub fn accesses(&self) -> Vec<(String, String, bool)> {
        self.state().accesses.clone()
    }
}

pub fn line(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| (*part).to_owned()).collect()
}

impl Backend for Fake {
    fn authenticate(&self, token: &str) -> Option<User> {
        self.state().tokens.get(token).cloned()
    }

    fn access(&self, user: &User, app: &str, write: bool) -> Result<(), Denied> {
        let mut state = self.state();
        state
            .accesses
            .push((user.name.clone(), app.to_owned(), write));
        match state.apps.get(app) {
            None => Err(Denied::NotFound(format!("app {app} does not exist"))),
            Some(found) if found.owner != user.name && !user.admin => Err(Denied::Forbidden(
                format!("app {app} belongs to another user"),
            )),
            Some(_) => Ok(()),
        }
    }

    fn run(
        &self,
        user: User,
        args: Vec<String>,
        output: mpsc::Sender<Chunk>,
    ) -> BoxFuture<'static, u32> {
        let fake = self.clone();
        Box::pin(async move {
            fake.state().runs.push((user.name.clone(), args.clone()));
            let out = |text: String| {
                let output = output.clone();
                async move { output.send(Chunk::Stdout(text)).await.expect("stdout") }
            };
            let err = |text: String| {
                let output = output.clone();
                async move { output.send(Chunk::Stderr(text)).await.expect("stderr") }
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match args.as_slice() {
                ["apps", "--json"] => {
                    let rows: Vec<_> = fake
                        .state()
                        .apps
                        .iter()
                        .filter(|(_, app)| user.admin || app.owner == user.name)
                        .map(|(name, app)| {
                            json!({"name": name, "owner": app.owner, "release": "v2", "up": app.instances, "desired": app.instances,
                                  // The default daemon: instances in the sandbox.
                                  "isolated": true})
                        })
                        .collect();
                    out(format!(
                        "{}\n",
                        serde_json::to_string_pretty(&rows).expect("json")
                    ))
                    .await;
                    0
                }
                ["ps", app, "--json"] => {
                    let count = fake.state().apps.get(*app).map_or(0, |app| app.instances);
                    let rows: Vec<_> = (1..=count)
                        .map(|i| {
                            json!({"instance": format!("{app}@{i}"), "release": "v2", "state": "up", "port": 20000 + i,
                                   "pid": 4000 + i, "uptime_secs": 65 * i, "restarts": 0,
                                   "memory_used": 12_582_912 * u64::from(i), "memory_limit": 268_435_456, "limit_enforced": true,
                                   "isolated": true})
                        })
                        .collect();
                    out(format!("{}\n", serde_json::to_string(&rows).expect("json"))).await;
                    0
                }
                ["releases", _, "--json"] => {
                    let rows = json!([
                        {"number": 1, "commit": "1111111111111111111111111111111111111111", "pusher": "alice", "time": 1_700_000_000, "note": "push", "current": false},
                        {"number": 2, "commit": "3f2c1ab000000000000000000000000000000000", "pusher": "alice", "time": 1_700_003_600, "note": "push", "current": true},
                    ]);
                    out(format!("{rows}\n")).await;
                    0
                }
                ["logs", app, "-n", n] => {
                    let n: usize = n.parse().expect("n");
                    let logs = fake
                        .state()
                        .apps
                        .get(*app)
                        .map(|app| app.logs.clone())
                        .unwrap_or_default();
                    for line in logs.iter().rev().take(n).rev() {
                        out(format!("{app}@1 | {line}\n")).await;
                    }
                    0
                }
                ["domains", app, "--json"] => {
                    let hosts = fake.state().domains.get(*app).cloned().unwrap_or_default();
                    out(format!(
                        "{}\n",
                        json!({"app": app, "hosts": hosts, "https_redirect": false})
                    ))
                    .await;
                    0
                }
                ["domains:add", app, host] => {
                    fake.state()
                        .domains
                        .entry((*app).to_owned())
                        .or_default()
                        .push((*host).to_owned());
                    out(format!("{host} now leads to {app}\n")).await;
                    0
                }
                ["domains:remove", app, host] => {
                    if let Some(hosts) = fake.state().domains.get_mut(*app) {
                        hosts.retain(|known| known != host);
                    }
                    out(format!("{host} removed from {app}\n")).await;
                    0
                }
                ["scale", app, spec] => {
                    let current = fake.state().apps.get(*app).map_or(0, |app| app.instances);
                    let target = match spec.strip_prefix('+') {
                        Some(more) => current + more.parse::<u32>().expect("+K"),
                        None => spec.parse().expect("N"),
                    };
                    if target > 10 {
                        err(format!(
                            " !     scale {target} is more than the maximum (10)\n"
                        ))
                        .await;
                        return 1;
                    }
                    err(format!("-----> Scaling {app} to {target}\n")).await;
                    if let Some(found) = fake.state().apps.get_mut(*app) {
                        found.instances = target;
                    }
                    err(format!(
                        "       {app}@{target} up on port {}\n",
                        20000 + target
                    ))
                    .await;
                    0
                }
                ["clone", app, rest @ ..] => {
                    let (new, command) = match rest {
                        [new, "--command", command] => (new.to_string(), *command),
                        ["--command", command] => (format!("{app}-1"), *command),
                        _ => {
                            err(" !     usage: clone APP [NEW] --command CMD\n".into()).await;
                            return 2;
                        }
                    };
                    if command == "panic" {
                        panic!("the fake backend panics on purpose");
                    }
                    if command == "exit 2" {
                        err(" !     usage: clone APP [NEW] --command CMD\n".into()).await;
                        return 2;
                    }
                    err(format!(
                        "-----> Creating {new}: {app} v2 with command {command}\n"
                    ))
                    .await;
                    if let Some(gate) = &fake.gate {
                        gate.notified().await;
                    }
                    if command == "false" {
                        err(format!(
                            " !     {new}@1 exited at once\n !     {new} was not created\n"
                        ))
                        .await;
                        return 1;
                    }
                    fake.add_app(&new, &user.name, 1, &[]);
                    err(format!("-----> {new} v1 deployed\n")).await;
                    0
                }
                ["deploy", new, "--from", url, ..] => {
                    err(format!("-----> Fetching {url}\n")).await;
                    fake.add_app(new, &user.name, 1, &[]);
                    err(format!("-----> {new} v1 deployed\n")).await;
                    0
                }
                _ => {
                    err(" !     unknown command\n".into()).await;
                    2
                }
            }
        })
    }
}

/// nap-web served on 127.0.0.1 around a fake.
pub struct Server {
    pub addr: SocketAddr,
    pub fake: Fake,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(fake: Fake) -> Server {
        Server::start_with(fake, Options::default()).await
    }

    pub async fn start_with(fake: Fake, options: Options) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = nap_web::router(Arc::new(fake.clone()), options);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(nap_web::serve(listener, app, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            fake,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) {
        self.stop
            .take()
            .expect("running")
            .send(())
            .expect("server still listening");
        let result = self
            .task
            .take()
            .expect("running")
            .await
            .expect("serve task");
        result.expect("serve returns Ok");
    }

    /// A GET with a bearer token (or none).
    pub async fn api_get(&self, path: &str, token: Option<&str>) -> crate::http::Reply {
        let auth = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = auth
            .iter()
            .map(|auth| ("Authorization", auth.as_str()))
            .collect();
        crate::http::request(self.addr, "GET", path, &headers, None).await
    }

    /// A POST of a JSON (or any) body with a bearer token (or none).
    pub async fn api_post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> crate::http::Reply {
        let auth = token.map(|token| format!("Bearer {token}"));
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
        headers.extend(auth.iter().map(|auth| ("Authorization", auth.as_str())));
        crate::http::request(self.addr, "POST", path, &headers, Some(body.as_bytes())).await
    }

    pub fn client(&self) -> crate::http::Client {
        crate::http::Client::new(self.addr)
    }
}
