//! Just enough of the W3C WebDriver protocol to drive Debian's chromium through chromedriver,
//! over loopback HTTP with the awc client the tests already use.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::http::Method;
use base64::Engine;
use serde_json::{json, Value};

/// The key under which WebDriver names an element (fixed by the W3C specification).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Flags for a quiet, throwaway browser: no sandbox (containers, root), no GPU, no traffic
/// beyond loopback (updates, sync, QUIC, first-run pages).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
];

/// The first of `names` found on PATH.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A chromedriver process, killed when dropped.
pub struct Driver {
    child: Child,
    url: String,
    chromium: PathBuf,
    client: awc::Client,
}

impl Driver {
    pub async fn start(chromedriver: &Path, chromium: PathBuf) -> Driver {
        // chromedriver cannot report a port it chose, so one is picked here; it stays free
        // for the moment between this and chromedriver binding it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish(),
        };
        let start = Instant::now();
        loop {
            let ready = match driver
                .client
                .get(format!("{}/status", driver.url))
                .send()
                .await
            {
                Ok(mut res) => res
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                return driver;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not become ready"
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new browser with a fresh profile and a window of the given size.
    pub async fn session(&self, width: u32, height: u32) -> Session {
        let profile = tempfile::tempdir().expect("a temp profile directory");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": self.chromium, "args": args},
        }}});
        let created = call(
            &self.client,
            Method::POST,
            &format!("{}/session", self.url),
            Some(capabilities),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot start chromium: {e}"));
        let id = created["sessionId"].as_str().expect("a session id");
        Session {
            url: format!("{}/session/{id}", self.url),
            client: self.client.clone(),
            _profile: profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window. Dropping it closes the browser, before chromedriver goes.
pub struct Session {
    url: String,
    client: awc::Client,
    _profile: tempfile::TempDir,
}

pub struct Element(String);

impl Session {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        call(&self.client, method, &format!("{}{path}", self.url), body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.call(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The first element matching a CSS selector, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let body = json!({"using": "css selector", "value": css});
        let url = format!("{}/element", self.url);
        match call(&self.client, Method::POST, &url, Some(body)).await {
            Ok(found) => found[ELEMENT].as_str().map(|id| Element(id.to_string())),
            Err(e) if e.contains("no such element") => None,
            Err(e) => panic!("WebDriver find {css}: {e}"),
        }
    }

    /// A real click, as a person would make it (scrolled into view, hit-tested).
    pub async fn click(&self, element: &Element) {
        let path = format!("/element/{}/click", element.0);
        self.call(Method::POST, &path, Some(json!({}))).await;
    }

    pub async fn type_into(&self, element: &Element, text: &str) {
        let path = format!("/element/{}/value", element.0);
        self.call(Method::POST, &path, Some(json!({ "text": text })))
            .await;
    }

    pub async fn clear(&self, element: &Element) {
        let path = format!("/element/{}/clear", element.0);
        self.call(Method::POST, &path, Some(json!({}))).await;
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        let body = json!({"script": script, "args": args});
        self.call(Method::POST, "/execute/sync", Some(body)).await
    }

    pub async fn resize(&self, width: u32, height: u32) {
        let body = json!({"width": width, "height": height});
        self.call(Method::POST, "/window/rect", Some(body)).await;
    }

    /// A PNG of the whole page at `width` pixels wide, written to `path`.
    pub async fn screenshot_full_page(&self, width: u32, path: &Path) {
        self.resize(width, 800).await;
        // The window is taller than the page by the browser's own frame, if it draws one.
        let script = "window.scrollTo(0, 0);
            return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight;";
        let height = self.execute(script, vec![]).await.as_u64().unwrap_or(800);
        self.resize(
            width,
            u32::try_from(height).unwrap_or(4000).clamp(400, 4000),
        )
        .await;
        // Let layout settle after the resize before the picture is taken.
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        let png = self.call(Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("valid base64");
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

impl Drop for Session {
    /// Closing is blocking so that it also happens when a test panics; it takes milliseconds.
    fn drop(&mut self) {
        let _ = ureq::delete(&self.url)
            .timeout(Duration::from_secs(10))
            .call();
    }
}

/// One WebDriver command; the error is the driver's message.
async fn call(
    client: &awc::Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let request = client.request(method, url);
    let sent = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    let mut res = sent.map_err(|e| e.to_string())?;
    // Screenshots are several megabytes of base64.
    let bytes = res
        .body()
        .limit(64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    let mut answer: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let value = answer["value"].take();
    if res.status().is_success() {
        Ok(value)
    } else {
        Err(format!("{}: {}", value["error"], value["message"]))
    }
}
