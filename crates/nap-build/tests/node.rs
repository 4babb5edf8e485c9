//! A Node app: `npm install` of a `file:` dependency, offline, and the cache.

use nap_build::Detected;

use crate::util::Fixture;

const PACKAGE_JSON: &str = r#"{
  "name": "myapp",
  "version": "1.0.0",
  "private": true,
  "dependencies": { "tinydep": "file:vendor/tinydep" }
}
"#;

fn node_release(fx: &Fixture) -> std::path::PathBuf {
    fx.release(&[
        ("package.json", PACKAGE_JSON),
        (
            "vendor/tinydep/package.json",
            r#"{ "name": "tinydep", "version": "1.0.0", "main": "index.js" }"#,
        ),
        (
            "vendor/tinydep/index.js",
            "exports.greeting = 'hello from tinydep';\n",
        ),
        ("app.js", "console.log(require('tinydep').greeting);\n"),
    ])
}

/// npm must not touch the network: the test's config vars say so.
const NPM_ENV: [(&str, &str); 1] = [("npm_config_offline", "true")];

#[tokio::test]
async fn a_node_app_gets_its_file_dependency_and_an_unchanged_one_comes_from_the_cache() {
    let fx = Fixture::new().await;
    let first = node_release(&fx);
    let (result, lines) = fx.build(&fx.request(&first, &NPM_ENV)).await;
    let built = result.unwrap_or_else(|error| panic!("{error}: {lines:#?}"));
    assert_eq!(built.detected, Detected::Node { lockfile: None });
    assert!(!built.reused_cache, "{lines:#?}");
    assert_eq!(lines[0], "-----> Building (node)");
    assert_eq!(lines[1], "       npm install (no lockfile)");
    let (code, out) = fx.run_in(&first, "node app.js").await;
    assert_eq!(
        (code, out.last().map(String::as_str)),
        (0, Some("       hello from tinydep")),
        "{out:#?}"
    );

    let second = node_release(&fx);
    let (result, lines) = fx.build(&fx.request(&second, &NPM_ENV)).await;
    let built = result.unwrap_or_else(|error| panic!("{error}: {lines:#?}"));
    assert!(built.reused_cache, "{lines:#?}");
    assert_eq!(
        lines,
        [
            "-----> Building (node)",
            "       using the cached dependencies (package.json unchanged)"
        ]
    );
    let (code, out) = fx.run_in(&second, "node app.js").await;
    assert_eq!(
        (code, out.last().map(String::as_str)),
        (0, Some("       hello from tinydep")),
        "{out:#?}"
    );
}
