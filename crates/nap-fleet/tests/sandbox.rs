//! The sandbox of the rendered units, as systemd itself rates it:
//! `systemd-analyze security --offline=true` on an instance of each
//! template must say OK or better (exposure at most 3.0 of 10), and
//! `systemd-analyze verify` must accept them. This is the system manager's
//! view (DynamicUser= and the rest are system-manager features); the units'
//! behaviour is run under a real user manager in `systemd.rs`.

use std::path::Path;
use std::process::Command;

use nap_fleet::render::{RenderInput, Tarball, Templates, render};

use crate::harness::run;

/// The highest exposure systemd calls "OK" (its scale: ≤ 1.9 "SAFE", ≤ 4.9
/// "OK", …); the issue asks for 3.0 at most.
const MOST_EXPOSURE: f64 = 3.0;

fn input() -> RenderInput {
    RenderInput {
        app: "web".into(),
        release: "v3".into(),
        generation: 1,
        command: "python3 -m http.server $PORT".into(),
        env: vec![("GREETING".into(), "hello".into())],
        memory: Some(256 << 20),
        tarball: Tarball {
            url: "http://10.0.0.1:8080/api/apps/web/releases/v3/tarball".into(),
            token: "t0ken".into(),
        },
        user: "nap".into(),
        work_dir: "/var/lib/nap/instances".into(),
        node_env_file: "/etc/nap/node.env".into(),
        etcd_endpoints: vec!["http://10.0.0.1:2379".into()],
        etcd_api: "/v3".into(),
        etcd_ttl_secs: 60,
        etcd_refresh_secs: 20,
    }
}

/// Reads systemd-analyze's last line: `→ Overall exposure level for NAME: 2.1 OK 🙂`.
fn exposure(report: &str) -> Option<(f64, String)> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    let mut words = rest.split_whitespace();
    let number = words.next()?.parse().ok()?;
    Some((number, words.next().unwrap_or("").to_owned()))
}

fn analyze(dir: &Path, unit: &str) -> (f64, String, String) {
    let output = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(dir.join(unit))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display())));
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let (number, word) = exposure(&report).unwrap_or_else(|| {
        panic!(
            "no exposure level in systemd-analyze's answer for {unit}:\n{report}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (number, word, report)
}

#[test]
fn rendered_units_rate_ok_or_better_and_verify() {
    let rendered = render(&Templates::default(), &input()).expect("renders");
    let dir = tempfile::tempdir().expect("temp dir");
    let sidekick = rendered.discovery.as_ref().expect("etcd is configured");
    // systemd rates instances: the template text under the instance's name.
    let units = [
        (&rendered.instance, "web@v3-1-20001.service"),
        (sidekick, "web_discovery@v3-1-20001.service"),
    ];
    for (unit, instance) in units {
        std::fs::write(dir.path().join(&unit.name), &unit.text).expect("write template");
        std::fs::write(dir.path().join(instance), &unit.text).expect("write instance");
    }
    for (_, instance) in units {
        let (number, word, report) = analyze(dir.path(), instance);
        println!(
            "systemd-analyze security --offline=true {instance}: {number} {word}; still open:"
        );
        for line in report.lines().filter(|l| l.starts_with('✗')) {
            println!(
                "  {}",
                line.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
        assert!(
            number <= MOST_EXPOSURE,
            "{instance} is rated {number} {word}, above {MOST_EXPOSURE}:\n{report}"
        );
    }
    let verified = run(Command::new("systemd-analyze")
        .arg("verify")
        .args(units.map(|(_, instance)| instance))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display())));
    let complaints = String::from_utf8_lossy(&verified.stderr).into_owned();
    assert!(
        verified.status.success(),
        "systemd-analyze verify:\n{complaints}"
    );
    for line in complaints.lines().filter(|l| !l.trim().is_empty()) {
        // MemoryLimit= stays for cgroup v1 machines.
        assert!(
            line.contains("MemoryLimit="),
            "systemd-analyze verify: {line}"
        );
    }
}

#[test]
fn the_exposure_line_is_read() {
    assert_eq!(
        exposure("x\n→ Overall exposure level for a@b.service: 2.1 OK 🙂\n"),
        Some((2.1, "OK".to_owned()))
    );
    assert_eq!(exposure("nothing"), None);
}
