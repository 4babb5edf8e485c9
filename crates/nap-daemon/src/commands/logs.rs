//! `logs APP [-n N] [-f] [-i I]`: instance output merged in time order, as
//! the runtime reads it (`APP@I | text` per line).

use nap_runtime::LogRequest;

use super::{Call, fail};

/// Most lines `-n` may ask for.
const MAX_LINES: usize = 10_000;

struct Options<'a> {
    app: &'a str,
    lines: usize,
    follow: bool,
    instance: Option<u32>,
}

fn parse<'a>(args: &[&'a str]) -> Option<Options<'a>> {
    let mut options = Options {
        app: "",
        lines: 100,
        follow: false,
        instance: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "-f" | "--follow" => options.follow = true,
            "-n" | "--lines" => {
                options.lines = args.next()?.parse().ok().filter(|n| *n <= MAX_LINES)?
            }
            "-i" | "--instance" => options.instance = Some(args.next()?.parse().ok()?),
            flag if flag.starts_with('-') => return None,
            app if options.app.is_empty() => options.app = app,
            _ => return None,
        }
    }
    (!options.app.is_empty()).then_some(options)
}

pub async fn logs(call: Call<'_, '_>) -> u32 {
    let (daemon, caller, args, out, command) = call.parts();
    let Some(options) = parse(args) else {
        return command.usage(out).await;
    };
    let (app, _) = match command.app(daemon, caller, options.app, out).await {
        Ok(found) => found,
        Err(status) => return status,
    };
    let request = LogRequest {
        app: app.to_string(),
        lines: options.lines,
        instance: options.instance,
        follow: options.follow,
    };
    let mut lines = match daemon.runtime.logs(request).await {
        Ok(lines) => lines,
        Err(e) => return fail(out, e).await,
    };
    // With -f this runs until the client goes away: then this future is dropped, and with it
    // the receiver, which ends the runtime's reading.
    while let Some(line) = lines.recv().await {
        out.line(&format!("{app}@{} | {}", line.index, line.text))
            .await;
        if out.closed() {
            break;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse(&["web", "-n", "5", "-f", "-i", "2"]).unwrap();
        assert_eq!(
            (o.app, o.lines, o.follow, o.instance),
            ("web", 5, true, Some(2))
        );
        assert!(parse(&["web", "-n"]).is_none());
        assert!(parse(&["web", "-n", "lots"]).is_none());
        assert!(parse(&["web", "-x"]).is_none());
        assert!(parse(&["web", "other"]).is_none());
        assert!(parse(&[]).is_none());
    }
}
