//! The web manager in a real browser: headless Chromium driven through
//! chromedriver's WebDriver HTTP API (plain JSON over HTTP, by hand).

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::support::{ALICE, Fake, Server, line};
use crate::webdriver::{Driver, find_program};

/// Where screenshots go (printed by the test).
fn output_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("nap-web-test-output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_plus_one_in_chromium() {
    let server = Server::start(Fake::new()).await;
    let base = format!("http://{}", server.addr);
    // WebDriver calls block; the server keeps running on the runtime meanwhile.
    let screenshots = tokio::task::spawn_blocking(move || drive(&base))
        .await
        .expect("browser steps");
    for shot in screenshots {
        println!("screenshot: {}", shot.display());
    }
    let actions = server.fake.actions();
    assert_eq!(
        actions[0],
        ("alice".to_owned(), line(&["scale", "web", "+1"]))
    );
    assert_eq!(
        actions[1],
        (
            "alice".to_owned(),
            line(&["clone", "web", "--command", "python3 worker.py"])
        )
    );
    server.stop().await;
}

/// The browser's steps; returns the screenshots it saved.
fn drive(base: &str) -> Vec<PathBuf> {
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let chromedriver = find_program(&["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium.clone(), chromedriver.clone()) else {
        panic!(
            "this test needs Chromium and chromedriver on PATH (Debian: `apt-get install -y chromium chromium-driver`); \
             chromium: {chromium:?}, chromedriver: {chromedriver:?}"
        );
    };
    let dir = output_dir();
    std::fs::create_dir_all(&dir).expect("output directory");
    let driver = Driver::start(&chromedriver, &chromium);
    let mut shots = Vec::new();

    driver.go(&format!("{base}/login"));
    let token = driver.find("#token");
    driver.send_keys(&token, ALICE);
    driver.click(&driver.find("#login"));
    // The apps table, with a link to the app.
    let link = driver.find("a[href='/apps/web']");
    shots.push(driver.screenshot(&dir.join("apps.png")));
    driver.click(&link);

    assert_eq!(driver.text(&driver.find("#up")), "1");
    assert_eq!(driver.find_all("#instances tbody tr").len(), 1);
    driver.click(&driver.find("#scale-up"));

    // The action page streams the output; `#result.ok` appears once it is done.
    let result = driver.find("#result.ok");
    assert_eq!(driver.text(&result), "Done.");
    let output = driver.text(&driver.find("#output"));
    assert!(output.contains("-----> Scaling web to 2"), "{output}");
    shots.push(driver.screenshot(&dir.join("scale-action.png")));

    driver.click(&driver.find("#back"));
    // Found only once the page shows two instances.
    driver.find("#instances tbody tr:nth-child(2)");
    assert_eq!(driver.text(&driver.find("#up")), "2");
    assert_eq!(driver.text(&driver.find("#desired")), "2");
    assert_eq!(driver.find_all("#instances tbody tr").len(), 2);
    shots.push(driver.screenshot(&dir.join("scale.png")));

    // "Deploy similar app" opens a dialog that asks for the command.
    driver.click(&driver.find("#clone-open"));
    let command = driver.find("#clone-command");
    assert_eq!(
        driver.call("GET", &format!("/element/{command}/displayed"), None),
        json!(true)
    );
    driver.send_keys(&command, "python3 worker.py");
    shots.push(driver.screenshot(&dir.join("clone-dialog.png")));
    driver.click(&driver.find("#clone-dialog button.primary"));
    assert_eq!(driver.text(&driver.find("#result.ok")), "Done.");

    // "Deploy from URL" asks for the URL, the name and a ref.
    driver.go(&format!("{base}/apps/web"));
    driver.click(&driver.find("button[data-open='deploy-dialog']"));
    let url = driver.find("#dialog-deploy-url");
    assert_eq!(
        driver.call("GET", &format!("/element/{url}/displayed"), None),
        json!(true)
    );
    shots.push(driver.screenshot(&dir.join("deploy-dialog.png")));
    shots
}
