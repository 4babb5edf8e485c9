//! The actor that owns every instance: one task, one map, driven by messages.
//!
//! Requests come from [`crate::Supervisor`] handles over a bounded channel; events come from
//! the tasks the actor spawns (a monitor per run, a timer per pending restart) over an
//! unbounded one, so those tasks never wait on the actor. Nothing here blocks for long: slow
//! work (stopping processes, health checks, reading `/proc` for `list`) happens in other tasks
//! or in the handle, with the results coming back as messages.
//!
//! An instance's life: `start` spawns run 1 (state Starting). When a run ends by itself the
//! instance waits in Backoff for a timer, then a new run starts (`restarts` + 1). A stop sets
//! the state to Stopped and asks the run's monitor to kill the process group; when the monitor
//! reports the run ended, the instance is finalized: port released, cgroup and pid record
//! removed, stop callers answered, and it leaves the map.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nap_runtime::UpAddresses;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

mod views;

use crate::cgroup::{Cgroup, Cgroups};
use crate::group::Group;
use crate::health::{HealthWatch, Lifecycle};
use crate::logs::{self, LogFiles, LogSink, Tail};
use crate::orphans::{self, Record};
use crate::ports::PortPool;
use crate::run::{self, RunEnd};
use crate::supervisor::{SpawnError, StopError};
use crate::{Config, InstanceId, InstanceSpec, InstanceState, InstanceStatus, Started, procfs};
use nap_runtime::StartError;

/// What a [`crate::Supervisor`] handle asks.
pub(crate) enum Request {
    Start {
        spec: InstanceSpec,
        reply: oneshot::Sender<Result<Started, StartError>>,
    },
    Stop {
        id: InstanceId,
        reply: oneshot::Sender<Result<(), StopError>>,
    },
    List {
        reply: oneshot::Sender<Vec<Snapshot>>,
    },
    Watch {
        id: InstanceId,
        reply: oneshot::Sender<Option<HealthWatch>>,
    },
    /// A health check passed for this run.
    Healthy {
        id: InstanceId,
        run: u64,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// What the actor's own tasks report.
enum Event {
    RunEnded {
        id: InstanceId,
        run: u64,
        end: RunEnd,
    },
    RestartDue {
        id: InstanceId,
        timer: u64,
    },
    /// A run has been up for `stable_after`.
    StableDue {
        id: InstanceId,
        run: u64,
    },
}

/// An instance's status without its memory use, which the handle reads from `/proc` or the
/// cgroup outside the actor.
pub(crate) struct Snapshot {
    pub(crate) status: InstanceStatus,
    pub(crate) pgid: Option<i32>,
    pub(crate) cgroup: Option<Cgroup>,
}

struct Instance {
    id: InstanceId,
    spec: InstanceSpec,
    port: u16,
    cgroup: Option<Cgroup>,
    log: Arc<LogSink>,
    tail: Arc<Tail>,
    record_path: PathBuf,
    state: InstanceState,
    run: Option<Run>,
    first_run: u64,
    started_at: SystemTime,
    restarts: u32,
    next_backoff: Duration,
    /// The pending restart timer, with the number that its `RestartDue` event will carry.
    timer: Option<(u64, JoinHandle<()>)>,
    stop_waiters: Vec<oneshot::Sender<Result<(), StopError>>>,
    lifecycle: watch::Sender<Lifecycle>,
    span: tracing::Span,
}

/// The process of the current run.
struct Run {
    number: u64,
    pid: u32,
    started: Instant,
    /// Asks the run's monitor to stop it; taken when used.
    stop: Option<oneshot::Sender<()>>,
    oom_kills_before: Option<u64>,
}

pub(crate) struct Actor {
    config: Config,
    cgroups: Option<Cgroups>,
    ports: PortPool,
    logs: LogFiles,
    instances: HashMap<InstanceId, Instance>,
    next_serial: u64,
    next_run: u64,
    next_timer: u64,
    events: mpsc::UnboundedSender<Event>,
    shutting_down: bool,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    /// Where the instances that are up serve, published after every change.
    up_addresses: watch::Sender<Arc<UpAddresses>>,
}

impl Actor {
    /// Starts the actor task; it ends after every handle is gone and every instance stopped.
    pub(crate) fn spawn(
        config: Config,
        cgroups: Option<Cgroups>,
        first_serial: u64,
        up_addresses: watch::Sender<Arc<UpAddresses>>,
    ) -> mpsc::Sender<Request> {
        let (requests_tx, requests) = mpsc::channel(64);
        let (events, events_rx) = mpsc::unbounded_channel();
        let actor = Actor {
            ports: PortPool::new(config.ports.clone()),
            logs: LogFiles::new(config.logs_dir.clone(), config.log_max_bytes),
            config,
            cgroups,
            instances: HashMap::new(),
            next_serial: first_serial,
            next_run: 1,
            next_timer: 1,
            events,
            shutting_down: false,
            shutdown_waiters: Vec::new(),
            up_addresses,
        };
        tokio::spawn(actor.run(requests, events_rx));
        requests_tx
    }

    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        let mut handles_gone = false;
        loop {
            tokio::select! {
                request = requests.recv(), if !handles_gone => match request {
                    Some(request) => self.on_request(request),
                    None => {
                        // Dropping the last handle stops everything, like `shutdown`.
                        handles_gone = true;
                        self.begin_shutdown();
                    }
                },
                Some(event) = events.recv() => self.on_event(event),
            }
            // Every state change comes from one of the messages above; the router's view is
            // brought up to date after each (it is sent only when it changed).
            self.publish_up_addresses();
            if handles_gone && self.instances.is_empty() {
                break;
            }
        }
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Start { spec, reply } => {
                let _ = reply.send(self.start(spec));
            }
            Request::Stop { id, reply } => match self.instances.get_mut(&id) {
                Some(instance) => {
                    instance.stop_waiters.push(reply);
                    self.begin_stop(&id);
                }
                None => {
                    let _ = reply.send(Err(StopError::UnknownInstance { id }));
                }
            },
            Request::List { reply } => {
                let _ = reply.send(self.snapshots());
            }
            Request::Watch { id, reply } => {
                let watch = self.instances.get(&id).map(|instance| HealthWatch {
                    port: instance.port,
                    first_run: instance.first_run,
                    cgroup: instance.cgroup.clone(),
                    lifecycle: instance.lifecycle.subscribe(),
                    tail: instance.tail.clone(),
                });
                let _ = reply.send(watch);
            }
            Request::Healthy { id, run } => {
                if let Some(instance) = self.instances.get_mut(&id)
                    && instance.state == InstanceState::Starting
                    && instance.run.as_ref().is_some_and(|r| r.number == run)
                {
                    instance.state = InstanceState::Up;
                }
            }
            Request::Shutdown { reply } => {
                self.shutdown_waiters.push(reply);
                self.begin_shutdown();
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::RunEnded { id, run, end } => self.run_ended(&id, run, end),
            Event::RestartDue { id, timer } => self.restart_due(&id, timer),
            Event::StableDue { id, run } => {
                if let Some(instance) = self.instances.get_mut(&id)
                    && instance.state == InstanceState::Starting
                    && instance.run.as_ref().is_some_and(|r| r.number == run)
                {
                    instance.state = InstanceState::Up;
                }
            }
        }
    }

    fn start(&mut self, spec: InstanceSpec) -> Result<Started, StartError> {
        if self.shutting_down {
            return Err(StartError::ShuttingDown);
        }
        crate::validate(&spec).map_err(|reason| StartError::InvalidSpec { reason })?;
        let port = self.ports.acquire().ok_or(StartError::NoFreePort {
            start: self.config.ports.start,
            end: self.config.ports.end,
        })?;
        let started = self.start_on(spec, port);
        if started.is_err() {
            self.ports.release(port);
        }
        started
    }

    fn start_on(&mut self, spec: InstanceSpec, port: u16) -> Result<Started, StartError> {
        let id = InstanceId {
            app: spec.app.clone(),
            index: spec.index,
            release: spec.release.clone(),
            serial: self.next_serial,
        };
        self.next_serial += 1;
        let span = tracing::info_span!(
            "instance", app = %id.app, index = id.index, release = %id.release, serial = id.serial
        );
        let log = self
            .logs
            .sink(&spec.app, spec.index)
            .map_err(|source| SpawnError::Log {
                path: self.logs.path(&spec.app, spec.index),
                source,
            })?;
        let cgroup = self.make_cgroup(&id, spec.memory, &span);
        let mut instance = Instance {
            record_path: orphans::record_path(&self.config.state_dir, &id.file_stem()),
            id: id.clone(),
            spec,
            port,
            cgroup,
            log,
            tail: Arc::new(Tail::default()),
            state: InstanceState::Starting,
            run: None,
            first_run: self.next_run,
            started_at: SystemTime::now(),
            restarts: 0,
            next_backoff: self.config.backoff_min,
            timer: None,
            stop_waiters: Vec::new(),
            lifecycle: watch::Sender::new(Lifecycle::default()),
            span,
        };
        let run_number = self.take_run_number();
        match self.spawn_run(&mut instance, run_number) {
            Ok(pid) => {
                self.instances.insert(id.clone(), instance);
                Ok(Started { id, port, pid })
            }
            Err(error) => {
                remove_cgroup(&instance);
                Err(error.into())
            }
        }
    }

    /// A cgroup for the instance when cgroups work here. A failure to make one is logged and
    /// the instance runs without (and `list` says its limit is not enforced).
    fn make_cgroup(
        &self,
        id: &InstanceId,
        memory: Option<u64>,
        span: &tracing::Span,
    ) -> Option<Cgroup> {
        let cgroups = self.cgroups.as_ref()?;
        let _entered = span.enter();
        let cgroup = match cgroups.create(&id.file_stem()) {
            Ok(cgroup) => cgroup,
            Err(error) => {
                tracing::warn!(%error, "cannot create cgroup; running without memory limit");
                return None;
            }
        };
        if let Some(bytes) = memory
            && let Err(error) = cgroup.set_memory_limit(bytes)
        {
            tracing::warn!(%error, "cannot set memory limit; running without");
            if let Err(error) = cgroup.remove() {
                tracing::warn!(%error, dir = %cgroup.dir().display(), "cannot remove cgroup");
            }
            return None;
        }
        Some(cgroup)
    }

    fn take_run_number(&mut self) -> u64 {
        let number = self.next_run;
        self.next_run += 1;
        number
    }

    /// Starts a process for `instance` and the tasks that carry its output and watch it.
    fn spawn_run(&self, instance: &mut Instance, number: u64) -> Result<u32, SpawnError> {
        let mut child = run::spawn(
            &instance.spec,
            run::RunIo::Instance {
                port: instance.port,
            },
            instance.cgroup.as_ref(),
            &self.config.isolation,
        )?;
        let spawn_error = |source| SpawnError::Spawn {
            app: instance.id.app.clone(),
            index: instance.id.index,
            source,
        };
        let pid = child.id().ok_or_else(|| {
            spawn_error(std::io::Error::other("the new process was already reaped"))
        })?;
        let pgid = i32::try_from(pid).map_err(|e| spawn_error(std::io::Error::other(e)))?;
        // Before the output pumps start, so that this line comes first.
        instance.log.event(&format!(
            "started {} pid {pid} port {}",
            instance.spec.release, instance.port
        ));

        let mut pumps = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let pump = logs::pump(stdout, instance.log.clone(), instance.tail.clone());
            pumps.push(tokio::spawn(pump.instrument(instance.span.clone())));
        }
        if let Some(stderr) = child.stderr.take() {
            let pump = logs::pump(stderr, instance.log.clone(), instance.tail.clone());
            pumps.push(tokio::spawn(pump.instrument(instance.span.clone())));
        }

        let record = Record {
            app: instance.id.app.clone(),
            index: instance.id.index,
            release: instance.id.release.clone(),
            serial: instance.id.serial,
            pid: pgid,
            pgid,
            start_time: procfs::stat(pgid).map_or(0, |stat| stat.start_time),
            cgroup: instance.cgroup.as_ref().map(|c| c.dir().to_owned()),
        };
        if let Err(error) = orphans::write_record(&instance.record_path, &record) {
            let _entered = instance.span.enter();
            tracing::warn!(%error, path = %instance.record_path.display(), "cannot write pid record");
        }

        let (stop, stop_rx) = oneshot::channel();
        let group = Group {
            pgid: Some(pgid),
            cgroup: instance.cgroup.clone(),
        };
        let events = self.events.clone();
        let id = instance.id.clone();
        let grace = self.config.stop_grace;
        tokio::spawn(
            async move {
                let end = run::supervise(child, group, pumps, stop_rx, grace).await;
                let _ = events.send(Event::RunEnded {
                    id,
                    run: number,
                    end,
                });
            }
            .instrument(instance.span.clone()),
        );

        {
            let _entered = instance.span.enter();
            tracing::info!(pid, port = instance.port, "instance started");
        }
        instance.run = Some(Run {
            number,
            pid,
            started: Instant::now(),
            stop: Some(stop),
            oom_kills_before: instance.cgroup.as_ref().and_then(Cgroup::oom_kills),
        });
        instance.state = InstanceState::Starting;
        instance.started_at = SystemTime::now();
        instance.lifecycle.send_modify(|lifecycle| {
            lifecycle.run = number;
            lifecycle.pgid = Some(pgid);
        });
        // A run that stays up this long counts as up even if nobody checked its health; the
        // event makes the router hear of it then rather than at the next change.
        let (events, id, stable_after) = (
            self.events.clone(),
            instance.id.clone(),
            self.config.stable_after,
        );
        tokio::spawn(async move {
            tokio::time::sleep(stable_after).await;
            let _ = events.send(Event::StableDue { id, run: number });
        });
        Ok(pid)
    }

    fn run_ended(&mut self, id: &InstanceId, number: u64, end: RunEnd) {
        let Some(instance) = self.instances.get_mut(id) else {
            return;
        };
        let Some(run) = instance.run.take_if(|run| run.number == number) else {
            return;
        };
        let out_of_memory = match (&instance.cgroup, run.oom_kills_before) {
            (Some(cgroup), Some(before)) => cgroup.oom_kills().is_some_and(|now| now > before),
            _ => false,
        };
        let reason = run::describe_exit(
            end.status,
            instance.cgroup.is_some(),
            out_of_memory,
            instance.spec.memory,
        );
        instance.lifecycle.send_modify(|lifecycle| {
            lifecycle.pgid = None;
            lifecycle.last_exit = Some(reason.clone());
        });

        if end.stopped || instance.state == InstanceState::Stopped {
            instance.log.event(&format!(
                "{} pid {} {reason}",
                instance.spec.release, run.pid
            ));
            self.finalize(id);
            return;
        }

        if run.started.elapsed() >= self.config.stable_after {
            instance.next_backoff = self.config.backoff_min;
        }
        let delay = instance.next_backoff;
        instance.next_backoff = (delay * 2).min(self.config.backoff_max);
        instance.state = InstanceState::Backoff;
        instance.log.event(&format!(
            "{} pid {} {reason}, restarting in {}",
            instance.spec.release,
            run.pid,
            run::human_duration(delay)
        ));
        {
            let _entered = instance.span.enter();
            tracing::info!(%reason, ?delay, "instance exited; restarting after backoff");
        }
        self.schedule_restart(id, delay);
    }

    fn schedule_restart(&mut self, id: &InstanceId, delay: Duration) {
        let timer = self.next_timer;
        self.next_timer += 1;
        let events = self.events.clone();
        let due = id.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::RestartDue { id: due, timer });
        });
        if let Some(instance) = self.instances.get_mut(id)
            && let Some((_, old)) = instance.timer.replace((timer, handle))
        {
            old.abort();
        }
    }

    fn restart_due(&mut self, id: &InstanceId, timer: u64) {
        let due = self.instances.get(id).is_some_and(|instance| {
            instance.state != InstanceState::Stopped
                && instance.timer.as_ref().is_some_and(|(n, _)| *n == timer)
        });
        if !due {
            return;
        }
        let number = self.take_run_number();
        let Some(mut instance) = self.instances.remove(id) else {
            return;
        };
        instance.timer = None;
        let result = self.spawn_run(&mut instance, number);
        let delay = instance.next_backoff;
        match result {
            Ok(_pid) => instance.restarts += 1,
            Err(error) => {
                instance.state = InstanceState::Crashed;
                instance.next_backoff = (delay * 2).min(self.config.backoff_max);
                instance.log.event(&format!(
                    "cannot start {}: {error}, retrying in {}",
                    instance.spec.release,
                    run::human_duration(delay)
                ));
                let _entered = instance.span.enter();
                tracing::warn!(%error, "cannot restart instance");
            }
        }
        let crashed = instance.state == InstanceState::Crashed;
        self.instances.insert(id.clone(), instance);
        if crashed {
            self.schedule_restart(id, delay);
        }
    }

    /// Starts stopping an instance (if it is not already being stopped). Callers wait on the
    /// instance's `stop_waiters`.
    fn begin_stop(&mut self, id: &InstanceId) {
        let Some(instance) = self.instances.get_mut(id) else {
            return;
        };
        if instance.state == InstanceState::Stopped {
            return;
        }
        instance.state = InstanceState::Stopped;
        if let Some((_, timer)) = instance.timer.take() {
            timer.abort();
        }
        instance
            .lifecycle
            .send_modify(|lifecycle| lifecycle.stopped = true);
        instance
            .log
            .event(&format!("stopping {}", instance.spec.release));
        match &mut instance.run {
            Some(run) => {
                // If the run ended just now, its monitor is gone and the send fails; the
                // RunEnded event already on its way finalizes the instance instead.
                if let Some(stop) = run.stop.take() {
                    let _ = stop.send(());
                }
            }
            None => self.finalize(id),
        }
    }

    fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        let ids: Vec<InstanceId> = self.instances.keys().cloned().collect();
        for id in &ids {
            self.begin_stop(id);
        }
        self.answer_shutdown_waiters();
    }

    fn answer_shutdown_waiters(&mut self) {
        if self.shutting_down && self.instances.is_empty() {
            for waiter in self.shutdown_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// The instance's processes are gone: release everything it held.
    fn finalize(&mut self, id: &InstanceId) {
        let Some(instance) = self.instances.remove(id) else {
            return;
        };
        self.ports.release(instance.port);
        remove_cgroup(&instance);
        if let Err(error) = orphans::remove_record(&instance.record_path) {
            let _entered = instance.span.enter();
            tracing::warn!(%error, path = %instance.record_path.display(), "cannot delete pid record");
        }
        instance
            .log
            .event(&format!("stopped {}", instance.spec.release));
        {
            let _entered = instance.span.enter();
            tracing::info!("instance stopped");
        }
        instance.lifecycle.send_modify(|lifecycle| {
            lifecycle.pgid = None;
            lifecycle.stopped = true;
        });
        for waiter in instance.stop_waiters {
            let _ = waiter.send(Ok(()));
        }
        self.answer_shutdown_waiters();
    }
}

fn remove_cgroup(instance: &Instance) {
    if let Some(cgroup) = &instance.cgroup
        && let Err(error) = cgroup.remove()
    {
        let _entered = instance.span.enter();
        tracing::warn!(%error, dir = %cgroup.dir().display(), "cannot remove cgroup");
    }
}
