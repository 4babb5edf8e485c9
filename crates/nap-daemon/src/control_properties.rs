//! Properties of the control protocol's client over generated answers: a
//! daemon of another version, or anything else listening on the socket,
//! may send any lines; `call` ends with a status or one clean error.

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Frame, Request, call};

/// Cases per property: each is a real socket exchange.
const CASES: u32 = 96;

/// A line an answer is made of: well-formed frames, near misses and junk.
fn answer_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<String>().prop_map(|t| serde_json::to_vec(&Frame::Out(t)).unwrap()),
        any::<String>().prop_map(|t| serde_json::to_vec(&Frame::Err(t)).unwrap()),
        prop::sample::select(vec![
            r#"{"exit":-1}"#,
            r#"{"exit":4294967296}"#,
            r#"{"exit":"0"}"#,
            r#"{"out":1}"#,
            r#"{"out":"a","err":"b"}"#,
            r#"{}"#,
            r#"[]"#,
            r#"null"#,
            r#"{"exit":0"#,
            "",
            r#"{"out":"\ud800"}"#,
        ])
        .prop_map(|l| l.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

async fn exchange(
    lines: Vec<Vec<u8>>,
    exit: Option<u32>,
) -> (std::io::Result<u32>, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nap.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).await;
        for line in lines {
            let _ = stream.write_all(&line).await;
            let _ = stream.write_all(b"\n").await;
        }
        if let Some(status) = exit {
            let frame = serde_json::to_vec(&Frame::Exit(status)).unwrap();
            let _ = stream.write_all(&frame).await;
            let _ = stream.write_all(b"\n").await;
        }
    });
    let request = Request::Command {
        args: vec!["apps".into()],
        stdin: None,
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let result = call(&socket, &request, &mut stdout, &mut stderr).await;
    server.abort();
    (result, stdout, stderr)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any answer ends in a status or an error; a status only when the
    /// daemon sent one, after frames that were all well-formed.
    #[test]
    fn any_answer_ends_in_a_status_or_a_clean_error(
        lines in prop::collection::vec(answer_line(), 0..8),
        exit in prop::option::of(any::<u32>()),
    ) {
        let well_formed = lines.iter().all(|l| serde_json::from_slice::<Frame>(l).is_ok());
        let early_exit = lines.iter().any(|l| matches!(serde_json::from_slice::<Frame>(l), Ok(Frame::Exit(_))));
        let (result, _, _) = runtime().block_on(exchange(lines, exit));
        match result {
            Ok(_) => prop_assert!(early_exit || (well_formed && exit.is_some())),
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    /// Well-formed output reaches the right stream unchanged.
    #[test]
    fn frames_are_copied_as_they_are(
        outs in prop::collection::vec(any::<String>(), 0..6),
        status in any::<u32>(),
    ) {
        let lines = outs
            .iter()
            .enumerate()
            .map(|(n, text)| {
                let frame = if n % 2 == 0 { Frame::Out(text.clone()) } else { Frame::Err(text.clone()) };
                serde_json::to_vec(&frame).unwrap()
            })
            .collect();
        let (result, stdout, stderr) = runtime().block_on(exchange(lines, Some(status)));
        prop_assert_eq!(result.ok(), Some(status));
        let expected_out: String = outs.iter().step_by(2).cloned().collect();
        let expected_err: String = outs.iter().skip(1).step_by(2).cloned().collect();
        prop_assert_eq!(String::from_utf8(stdout).unwrap(), expected_out);
        prop_assert_eq!(String::from_utf8(stderr).unwrap(), expected_err);
    }
}
