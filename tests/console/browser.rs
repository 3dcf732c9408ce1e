//! A real browser for the console tests: Debian's Chromium, headless,
//! driven through chromium-driver (WebDriver) by fantoccini. Each browser
//! has a home of its own whose NSS database holds one client certificate
//! (imported from the PKCS#12 file `certs::pkcs12` writes, with pk12util)
//! and trusts the federation CA; Chromium's `AutoSelectCertificateForUrls`
//! policy presents that certificate without a dialog. So every page is
//! fetched over the console's real TLS 1.3 listener with a real client
//! certificate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::common::TestFederation;

/// Where Chromium reads machine policies on Debian.
const POLICY_DIR: &str = "/etc/chromium/policies/managed";
/// Any console on loopback gets the one certificate the browser holds.
const POLICY: &str = r#"{"AutoSelectCertificateForUrls": ["{\"pattern\":\"https://127.0.0.1:*\",\"filter\":{}}", "{\"pattern\":\"https://[*.]127.0.0.1\",\"filter\":{}}"]}"#;

const TOOLS: [&str; 4] = ["chromium", "chromedriver", "pk12util", "certutil"];

/// Whether the browser tools are here. Under `CI=true` a missing tool is a
/// failure (`.ci/run` installs them), elsewhere the test says it skips.
pub fn available() -> bool {
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .map(|s| !s.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "browser tools missing: {missing:?} (.ci/run installs chromium, chromium-driver and libnss3-tools)"
    );
    eprintln!(
        "SKIPPED: browser tools missing: {missing:?} (apt-get install chromium chromium-driver libnss3-tools)"
    );
    false
}

pub struct Browser {
    pub client: Client,
    /// `https://127.0.0.1:<port>` of the console.
    pub base: String,
    driver: Child,
    stopped: bool,
    _home: tempfile::TempDir,
}

fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn install_policy() {
    std::fs::create_dir_all(POLICY_DIR).unwrap();
    let path = Path::new(POLICY_DIR).join("casebridge-tests.json");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(POLICY) {
        std::fs::write(&path, POLICY).unwrap();
    }
}

/// How a browser shows pages: with page scripts blocked, and at a zoom
/// (percent; 200 is a person who needs large text).
#[derive(Debug, Clone, Copy)]
pub struct Look {
    pub no_script: bool,
    pub zoom: u32,
}

impl Default for Look {
    fn default() -> Self {
        Self {
            no_script: false,
            zoom: 100,
        }
    }
}

/// Chromium's options for `look`, keeping its profile in `profile`.
fn chrome_options(profile: &Path, look: Look) -> serde_json::Value {
    let args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        // Zoom as WCAG's reflow criterion takes it: at 200 % a 1280-pixel
        // window has 640 CSS pixels across, as a 640-pixel window at twice
        // the pixel density (which the screenshots then show at full size).
        format!(
            "--window-size={},{}",
            1280 * 100 / look.zoom,
            1600 * 100 / look.zoom
        ),
        format!(
            "--force-device-scale-factor={}",
            f64::from(look.zoom) / 100.0
        ),
        format!("--user-data-dir={}", profile.display()),
    ];
    let mut options = serde_json::json!({ "binary": "/usr/bin/chromium", "args": args });
    if look.no_script {
        options["prefs"] =
            serde_json::json!({ "profile.managed_default_content_settings.javascript": 2 });
    }
    options
}

impl Browser {
    /// A browser holding client certificate `client` of `agency`, at that
    /// agency's console.
    pub async fn open(fed: &TestFederation, agency: &str, client: &str) -> Browser {
        Self::open_with(fed, agency, client, Look::default()).await
    }

    /// [`Browser::open`], showing pages as `look` says.
    pub async fn open_with(
        fed: &TestFederation,
        agency: &str,
        client: &str,
        look: Look,
    ) -> Browser {
        let console = fed
            .node(agency)
            .console_addr()
            .expect("the node serves a console ([console] listen)");
        let home = tempfile::Builder::new()
            .prefix("casebridge-browser-")
            .tempdir()
            .unwrap();
        let pki = fed.pki(agency);
        let password = "browser-test-password";
        let p12 = casebridge::certs::pkcs12(
            &pki.join(format!("clients/{client}.pem")),
            &pki.join(format!("clients/{client}.key")),
            &pki.join("client-ca.pem"),
            &format!("{agency} {client}"),
            password,
        )
        .unwrap();
        let p12_path = home.path().join(format!("{client}.p12"));
        std::fs::write(&p12_path, p12).unwrap();
        let nss_dir = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&nss_dir).unwrap();
        let nss = format!("sql:{}", nss_dir.display());
        run("certutil", &["-N", "-d", &nss, "--empty-password"]);
        run(
            "pk12util",
            &["-i", p12_path.to_str().unwrap(), "-d", &nss, "-W", password],
        );
        run(
            "certutil",
            &[
                "-A",
                "-d",
                &nss,
                "-n",
                "federation CA",
                "-t",
                "C,,",
                "-i",
                fed.layout.federation_ca.to_str().unwrap(),
            ],
        );
        install_policy();
        let port = crate::common::free_port();
        let mut command = Command::new("chromedriver");
        command
            .arg(format!("--port={port}"))
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command.spawn().unwrap();
        let profile = home.path().join("profile");
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), chrome_options(&profile, look));
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if started.elapsed() < crate::common::WAIT => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromium-driver did not start a browser: {e}"),
            }
        };
        Browser {
            client,
            base: format!("https://{console}"),
            driver,
            stopped: false,
            _home: home,
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// The page's text as a person reads it.
    pub async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The current page's path (and query).
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    pub async fn fill(&self, name: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(&format!("[name='{name}']")))
            .await
            .unwrap_or_else(|e| panic!("no field {name}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Chooses `path` in file input `name` (as a person picks a file).
    pub async fn attach(&self, name: &str, path: &std::path::Path) {
        self.client
            .find(Locator::Css(&format!("input[type=file][name='{name}']")))
            .await
            .unwrap_or_else(|e| panic!("no file input {name}: {e}"))
            .send_keys(path.to_str().unwrap())
            .await
            .unwrap();
    }

    pub async fn choose(&self, name: &str, value: &str) {
        self.client
            .find(Locator::Css(&format!("select[name='{name}']")))
            .await
            .unwrap_or_else(|e| panic!("no select {name}: {e}"))
            .select_by_value(value)
            .await
            .unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing matches {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Clicks what leads to another page (a link, a form's button) and
    /// waits until that page has loaded (the old document is marked first,
    /// so a page that reloads the same URL is told apart).
    pub async fn follow(&self, css: &str) {
        self.client
            .execute(
                "document.documentElement.setAttribute('data-left', '1')",
                vec![],
            )
            .await
            .unwrap();
        self.click(css).await;
        let started = Instant::now();
        loop {
            let arrived = self
                .client
                .execute(
                    "return document.readyState === 'complete' && \
                     !document.documentElement.hasAttribute('data-left')",
                    vec![],
                )
                .await
                .map(|v| v == serde_json::Value::Bool(true))
                .unwrap_or(false);
            if arrived {
                return;
            }
            assert!(
                started.elapsed() < crate::common::WAIT,
                "no new page after clicking {css}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the error shown next to field `name` ("" when none).
    pub async fn field_error(&self, name: &str) -> String {
        match self
            .client
            .find(Locator::Css(&format!("#{name}-error")))
            .await
        {
            Ok(e) => e.text().await.unwrap(),
            Err(_) => String::new(),
        }
    }

    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
    }

    /// Saves what the browser shows under `target/console-screenshots/`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        self.stop_driver();
    }

    fn stop_driver(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        // The driver and the browser it started are one process group; the
        // driver is not reaped yet, so the group id is still ours.
        if let Some(group) = rustix::process::Pid::from_raw(self.driver.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop_driver();
    }
}

pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots")
}
