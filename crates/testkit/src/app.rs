//! The Keel app in-process, on port 0, with an HTTP client.

use std::net::{SocketAddr, TcpListener};

use server::config::Config;
use server::{Application, config};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A Keel app serving on a free loopback port for the length of a test.
///
/// Dropping it stops the server; [`TestApp::shutdown`] stops it gracefully and waits.
pub struct TestApp {
    /// The bound address.
    pub address: SocketAddr,
    /// A client with no redirects, no proxy and no cookie store.
    pub client: reqwest::Client,
    /// The app's realtime emitter, for tests of server-side emits.
    pub emitter: Option<keel_realtime::Emitter>,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// The app with the test defaults: loopback, one worker, everything in memory.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// The app with the test defaults, then `customize` applied to the configuration.
    pub async fn spawn_with(customize: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        customize(&mut config);
        config.validate().expect("the test configuration is valid");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let app = Application::build_with_listener(config, listener)
            .await
            .expect("the app builds");
        let address = app.address();
        let emitter = app.realtime_emitter();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("build the HTTP client");
        Self {
            address,
            client,
            emitter,
            stop: Some(stop),
            serving: Some(serving),
        }
    }

    /// The absolute URL of `path` on this app.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("the request is answered")
    }

    /// POST `body` as JSON to `path`.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("the request is answered")
    }

    /// Runs the graceful shutdown sequence and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving
                .await
                .expect("the server task ends")
                .expect("the server stops cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
    }
}

/// The configuration tests start from: loopback, port 0, one worker, no drain.
pub fn test_config() -> Config {
    let mut config = config::Config::default();
    config.server.host = [127, 0, 0, 1].into();
    config.server.port = 0;
    config.server.workers = Some(1);
    config.shutdown.drain_seconds = Some(0);
    config.shutdown.timeout_seconds = 5;
    // Development mail goes to files: into a folder of this test process, not the checkout.
    config.mail.dir = test_mail_dir();
    config.mail.poll_interval_ms = 100;
    config.mail.retry_backoff_ms = 200;
    config
}

/// Where the apps of this test process write development mail (`.eml` files).
pub fn test_mail_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("keel-test-mail-{}", std::process::id()))
}
