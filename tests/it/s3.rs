//! A real S3-compatible server over HTTP for the tests: s3s-fs, served
//! in-process on its own runtime, with SigV4 authentication. It can be
//! stopped and started again on the same port to simulate an outage.

use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

use crate::common::free_port;

pub const BUCKET: &str = "archive";
const ACCESS_KEY: &str = "sediment";
const SECRET_KEY: &str = "sediment-secret";

pub struct S3Server {
    pub port: u16,
    root: tempfile::TempDir,
    /// Its own runtime, so the server works under sync and async tests alike.
    runtime: Option<tokio::runtime::Runtime>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(BUCKET)).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut server = S3Server {
            port: free_port(),
            root,
            runtime: Some(runtime),
            task: None,
        };
        server.serve();
        server
    }

    fn serve(&mut self) {
        let fs = s3s_fs::FileSystem::new(self.root.path()).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let runtime = self.runtime.as_ref().unwrap();
        // s3s-fs checks If-None-Match and then writes, so two racing
        // create-only PUTs can both succeed; S3 (and MinIO) decide them
        // atomically. Serializing them keeps S3's promise, which the
        // compare-and-swap tests rely on.
        let creates = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        self.task = Some(runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (service, creates) = (service.clone(), creates.clone());
                let atomic_creates = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (service, creates) = (service.clone(), creates.clone());
                    async move {
                        let create_only =
                            request.method() == hyper::Method::PUT && request.headers().contains_key(hyper::header::IF_NONE_MATCH);
                        let _one_at_a_time = if create_only { Some(creates.lock().await) } else { None };
                        hyper::service::Service::call(&service, request).await
                    }
                });
                connections.spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), atomic_creates)
                        .await;
                });
            }
        }));
    }

    /// Stops serving: the port refuses connections, open ones are cut.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // Wait until the listener is gone, so a restart can bind the port.
            while !task.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.serve();
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The standard variables that point an S3 client at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", format!("http://{}", self.endpoint())),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Where the bucket's objects live on disk.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.path().join(BUCKET)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
