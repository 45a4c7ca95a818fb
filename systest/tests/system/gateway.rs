//! The nginx gateway in front of the real services: one origin, reads to
//! the query service, everything else to the command service.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tasklog_systest::{Api, System};

use crate::start;

pub(crate) struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    /// Renders the same template the local run and the compose stack use.
    pub(crate) fn start(system: &System) -> Nginx {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let template =
            std::fs::read_to_string(root.join("deploy/nginx/gateway.conf.template")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = system.log_dir().join("nginx");
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let gateway = template
            .replace("${QUERY_UPSTREAM}", &system.query.addr().to_string())
            .replace("${COMMAND_UPSTREAM}", &system.command.addr().to_string())
            .replace("${GATEWAY_PORT}", &port.to_string());
        std::fs::write(dir.join("gateway.conf"), gateway).unwrap();
        std::fs::copy(root.join("deploy/local/nginx.conf"), dir.join("nginx.conf")).unwrap();
        let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is installed (deploy/local/test installs it)");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .args(["-c", "nginx.conf", "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Nginx { child, dir, port }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(r) = http
                .get(format!("{}/gateway/health", self.url()))
                .send()
                .await
            {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let errors = std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default();
        panic!("nginx did not start:\n{errors}");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_gateway_sends_reads_to_query_and_writes_to_command() {
    let system = start().await;
    let nginx = Nginx::start(&system);
    nginx.wait_ready().await;
    let api = Api::new(nginx.url(), nginx.url());

    let me = api.register().await.unwrap();
    // A GET, but auth is the command service's.
    let whoami = api.get("/v1/auth/me", &me).await.unwrap();
    assert_eq!(whoami.status, StatusCode::OK, "{whoami:?}");
    assert_eq!(whoami.body["id"], me.user_id.as_str());
    let created = api
        .post("/v1/tasks", &me, json!({"title": "through the gateway"}))
        .await
        .unwrap();
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.body["id"].as_str().unwrap();

    let read = api
        .get_at(&format!("/v1/tasks/{id}"), &me, created.position().unwrap())
        .await
        .unwrap();
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    assert_eq!(read.body["title"], "through the gateway");
    // Only the query service stamps reads with the projection's position.
    assert!(read.header("x-projection-position").is_some());

    // The command service's own document describes the writes; the gateway
    // sends GETs to the query service, so it shows the reads.
    let doc = reqwest::get(format!("{}/openapi.json", nginx.url()))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/stats"].is_object(), "{doc}");

    // The client's request id goes through to the service and back.
    let traced = reqwest::Client::new()
        .get(format!("{}/health/live", nginx.url()))
        .header("x-request-id", "systest-gateway-1")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.headers()["x-request-id"], "systest-gateway-1");
}

#[tokio::test]
async fn a_service_down_behind_the_gateway_is_a_503_problem() {
    let mut system = start().await;
    let nginx = Nginx::start(&system);
    nginx.wait_ready().await;
    system.query.kill();
    let reply = reqwest::get(format!("{}/v1/stats", nginx.url()))
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers()["content-type"], "application/problem+json");
}
