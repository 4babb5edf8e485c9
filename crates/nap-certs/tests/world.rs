//! The HTTP-01 responder pebble connects to in these tests (nap's router in
//! the whole-product tests), and the world of resolver, responder and pebble
//! an ACME test starts.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use nap_certs::{ChallengeLookup, Challenges};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::pebble::{DnsResponder, Pebble};

/// The HTTP-01 responder: a tiny hyper server answering
/// `/.well-known/acme-challenge/TOKEN` from a challenge registry, as nap's
/// router will. Counts the challenges it answered. Stopped when dropped.
pub struct ChallengeResponder {
    pub port: u16,
    answered: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ChallengeResponder {
    pub async fn start(challenges: Challenges) -> ChallengeResponder {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind HTTP-01");
        let port = listener.local_addr().expect("address").port();
        let answered = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&answered);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let challenges = challenges.clone();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let response = match challenges.lookup(request.uri().path()) {
                            ChallengeLookup::Answer(body) => {
                                counter.fetch_add(1, Ordering::SeqCst);
                                Response::new(Full::new(Bytes::from(body)))
                            }
                            ChallengeLookup::Unknown | ChallengeLookup::NotAChallenge => {
                                let mut response =
                                    Response::new(Full::new(Bytes::from("no such challenge\n")));
                                *response.status_mut() = StatusCode::NOT_FOUND;
                                response
                            }
                        };
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        ChallengeResponder {
            port,
            answered,
            task,
        }
    }

    /// How many challenge requests were answered with a key authorization.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

impl Drop for ChallengeResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Everything an ACME test needs: resolver, responder answering from
/// `challenges`, and pebble.
pub struct AcmeWorld {
    pub challenges: Challenges,
    pub responder: ChallengeResponder,
    pub pebble: Pebble,
    _dns: DnsResponder,
}

impl AcmeWorld {
    pub async fn start() -> AcmeWorld {
        let challenges = Challenges::new();
        AcmeWorld::start_answering_from(challenges.clone(), challenges).await
    }

    /// The responder answers from `answering`, which the test may keep
    /// apart from the registry the client publishes to.
    pub async fn start_answering_from(challenges: Challenges, answering: Challenges) -> AcmeWorld {
        let dns = DnsResponder::start().await;
        let responder = ChallengeResponder::start(answering).await;
        let pebble = Pebble::start(responder.port, dns.addr);
        AcmeWorld {
            challenges,
            responder,
            pebble,
            _dns: dns,
        }
    }
}
