//! TLS for a listener through rustls (aws-lc-rs): the server certificate
//! and key from PEM files, reloaded when the files change, and optional
//! client certificates (mutual TLS) whose subject becomes the principal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::Principal;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificate a listener serves, swapped when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    /// The file contents last loaded: a change of either is a reload.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
    current: RwLock<Arc<CertifiedKey>>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

/// The PEM certificates in `pem` (read from `path`, the `what` key); at least one.
fn certificates(pem: &[u8], path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{what} {} holds no PEM certificate", path.display()));
    }
    Ok(chain)
}

/// The CA certificates in the PEM file at `path` (the `what` key), as trust roots.
fn roots(path: &Path, what: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(&read(path, what)?, path, what)? {
        roots.add(ca).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    }
    Ok(roots)
}

fn certified_key(cert_pem: &[u8], key_pem: &[u8], cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = certificates(cert_pem, cert, "tls_cert")?;
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private, &provider())
        .map_err(|e| format!("tls_key {} does not fit tls_cert {}: {e}", key.display(), cert.display()))
}

impl ReloadingCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let cert_pem = read(cert, "tls_cert")?;
        let key_pem = read(key, "tls_key")?;
        let current = certified_key(&cert_pem, &key_pem, cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            loaded: Mutex::new((cert_pem, key_pem)),
            current: RwLock::new(Arc::new(current)),
        })
    }

    /// Loads the files again if they changed. `Ok(true)` when a new
    /// certificate is served from now on; an error keeps the old one (a
    /// half-written pair must not take the listener down). Blocking file I/O.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let cert_pem = read(&self.cert, "tls_cert")?;
        let key_pem = read(&self.key, "tls_key")?;
        let mut loaded = self.loaded.lock();
        if loaded.0 == cert_pem && loaded.1 == key_pem {
            return Ok(false);
        }
        let next = certified_key(&cert_pem, &key_pem, &self.cert, &self.key)?;
        *self.current.write() = Arc::new(next);
        *loaded = (cert_pem, key_pem);
        Ok(true)
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// A listener's rustls configuration, and its certificate for reloading.
pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<(Arc<ServerConfig>, Arc<ReloadingCert>), String> {
    let resolver = Arc::new(ReloadingCert::load(cert, key)?);
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(path, "tls_client_ca")?), provider())
                .build()
                .map_err(|e| format!("tls_client_ca {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_cert_resolver(resolver.clone());
    Ok((Arc::new(config), resolver))
}

/// What the settings naming a client's CA, certificate and key are
/// called where they were given, for error messages.
pub struct SettingNames {
    pub ca: &'static str,
    pub cert: &'static str,
    pub key: &'static str,
}

/// The broker's config keys for its inter-broker client.
pub const INTER_BROKER_SETTINGS: SettingNames = SettingNames {
    ca: "inter_broker_tls_ca",
    cert: "inter_broker_tls_cert",
    key: "inter_broker_tls_key",
};

/// A client config trusting the CA in `ca` (PEM), presenting `identity`
/// (certificate and key files) when given: how a follower reaches a leader, and
/// the command line a broker.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>, names: &SettingNames) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca, names.ca)?);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(&read(cert, names.cert)?, cert, names.cert)?;
            let private =
                PrivateKeyDer::from_pem_slice(&read(key, names.key)?).map_err(|e| format!("{} {}: {e}", names.key, key.display()))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| format!("{} {}: {e}", names.cert, cert.display()))?
        }
    };
    Ok(Arc::new(config))
}

/// The principal of a verified client certificate: `User:` and its subject
/// as RFC 2253 writes it (most specific first, `CN=client,O=Example`), which
/// is what Kafka's default `ssl.principal.mapping.rules` gives.
pub fn principal_of(chain: &[CertificateDer<'_>]) -> Option<Principal> {
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let kind = x509_parser::objects::oid2abbrev(atv.attr_type(), registry)
                        .map(str::to_string)
                        .unwrap_or_else(|_| atv.attr_type().to_id_string());
                    let value = atv.as_str().map(escape_rfc2253).unwrap_or_default();
                    format!("{kind}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    let subject: Vec<String> = rdns.into_iter().rev().collect();
    Principal::parse(&format!("User:{}", subject.join(",")))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.chars().count() && c == ' ');
        if edge || ",+\"\\<>;=".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(cn: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Example, Inc");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn the_subject_is_the_principal_in_rfc2253_order() {
        let (cert, _) = self_signed("client-1");
        let der: Vec<CertificateDer> = CertificateDer::pem_slice_iter(cert.as_bytes()).map(Result::unwrap).collect();
        assert_eq!(principal_of(&der).unwrap().as_str(), "User:CN=client-1,O=Example\\, Inc");
        assert!(principal_of(&[]).is_none());
        assert!(principal_of(&[CertificateDer::from(vec![1, 2, 3])]).is_none());
    }

    #[test]
    fn certificates_reload_only_when_their_files_change_and_make_sense() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (cert, key) = self_signed("one");
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        let (_, reloading) = server_config(&cert_path, &key_path, None).unwrap();
        let served = || reloading.current.read().cert[0].clone();
        let first = served();
        assert_eq!(reloading.reload_if_changed(), Ok(false));
        // A new certificate with the old key does not fit: the old pair stays.
        let (cert2, key2) = self_signed("two");
        std::fs::write(&cert_path, &cert2).unwrap();
        assert!(reloading.reload_if_changed().unwrap_err().contains("does not fit"));
        assert_eq!(served(), first);
        std::fs::write(&key_path, &key2).unwrap();
        assert_eq!(reloading.reload_if_changed(), Ok(true));
        assert_ne!(served(), first);
        std::fs::write(&cert_path, "garbage").unwrap();
        assert!(reloading.reload_if_changed().is_err());
    }

    #[test]
    fn bad_files_are_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(server_config(&missing, &missing, None)
            .unwrap_err()
            .contains("cannot read tls_cert"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(server_config(&empty, &empty, None).unwrap_err().contains("no PEM certificate"));
        let (cert, key) = self_signed("x");
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, &cert).unwrap();
        std::fs::write(&k, &key).unwrap();
        assert!(server_config(&c, &k, Some(&empty)).unwrap_err().contains("tls_client_ca"));
        assert!(server_config(&c, &k, Some(&c)).is_ok());
    }
}
