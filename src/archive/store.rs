//! Opens the archive's object store from the `--archive` URL.

use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("archive URL {url:?} is invalid: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("cannot open archive {url}: {source}")]
    Open { url: String, source: object_store::Error },
    #[error("cannot create archive directory {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
}

/// The store for `url`, with every key relative to the URL's path.
///
/// - `file:///path`: a local directory (created if missing), through
///   object_store's file backend.
/// - `s3://bucket/prefix`: AWS S3 or any S3-compatible store; credentials,
///   region and endpoint from the standard `AWS_*` variables
///   (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP=true` for plain HTTP).
/// - anything else object_store parses (`gs://`, `az://`, `memory://`, ...),
///   configured from the environment.
pub fn open(url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let invalid = |message: String| StoreError::InvalidUrl {
        url: url.to_string(),
        message,
    };
    let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    let open_err = |source| StoreError::Open {
        url: url.to_string(),
        source,
    };
    match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|()| invalid("a file URL needs an absolute path".into()))?;
            std::fs::create_dir_all(&path).map_err(|source| StoreError::CreateDir {
                path: path.display().to_string(),
                source,
            })?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(&path).map_err(open_err)?))
        }
        "s3" | "s3a" => {
            let bucket = parsed
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| invalid("an s3 URL needs a bucket".into()))?;
            // Stop retrying after 15 s rather than object_store's default of
            // three minutes (an attempt that hangs still waits for the 30 s
            // request timeout, AWS_TIMEOUT): the uploader has its own backoff,
            // and operators see errors and the backlog sooner.
            let retry = object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: std::time::Duration::from_secs(15),
                ..Default::default()
            };
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .build()
                .map_err(open_err)?;
            Ok(with_prefix(Arc::new(store), parsed.path()))
        }
        _ => {
            let (store, path) = object_store::parse_url_opts(&parsed, std::env::vars()).map_err(open_err)?;
            Ok(with_prefix(Arc::from(store), path.as_ref()))
        }
    }
}

fn with_prefix(store: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

/// The default archive: a folder under the data dir.
pub fn default_url(data_dir: &FsPath) -> String {
    let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("file://{}/archive", absolute.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn file_urls_open_a_directory_and_bad_urls_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/arch", dir.path().display());
        let store = open(&url).unwrap();
        store.put(&"a/b.txt".into(), b"x".to_vec().into()).await.unwrap();
        assert!(dir.path().join("arch/a/b.txt").exists());
        assert!(matches!(open("not a url"), Err(StoreError::InvalidUrl { .. })));
        assert!(matches!(open("s3:///no-bucket"), Err(StoreError::InvalidUrl { .. })));
        assert!(open("memory:///").is_ok());
    }
}
