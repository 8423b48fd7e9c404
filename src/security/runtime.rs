//! The broker's security in force: the authorization policy with the
//! current ACL index, the SCRAM credentials and PLAIN users SASL checks
//! against, the failed-login backoff, and the rate-limited audit log.
//! Handlers ask it; the coordination store's changes are installed into it.

use std::net::IpAddr;
use std::sync::Arc;

use aws_lc_rs::hmac;
use parking_lot::{Mutex, RwLock};

use super::acl::{AclIndex, Operation, Policy, Requester, ResourceType};
use super::plain::{PlainError, PlainUsers};
use super::sasl::Credentials;
use super::scram::{ScramAlgorithm, ScramCredential};
use super::state::SecurityState;
use super::throttle::{FailedLogins, LogLimiter};
use super::Principal;
use crate::config::AuthConfig;
use crate::metrics::{AuthLabels, DenialLabels, Metrics};

/// Where secure randomness comes from (SCRAM nonces, the secret behind
/// unknown users' made-up salts): the composition root hands it in.
pub trait Entropy: Send + Sync {
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's generator, through aws-lc-rs.
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn fill(&self, buf: &mut [u8]) {
        use aws_lc_rs::rand::SecureRandom;
        if aws_lc_rs::rand::SystemRandom::new().fill(buf).is_err() {
            // The OS generator does not fail on Linux; if it ever did, a
            // nonce of zeros would make SCRAM replayable, so stop here.
            tracing::error!("the system random generator failed");
            std::process::abort();
        }
    }
}

/// The security state as installed, with its ACL index.
#[derive(Debug, Default)]
pub struct View {
    /// Grows with every change (etcd revision, or the embedded state's version).
    pub version: u64,
    pub state: SecurityState,
    pub acls: AclIndex,
    /// The client quotas, indexed for lookups per request.
    pub quotas: crate::quota::QuotaIndex,
}

pub struct Security {
    policy: Policy,
    view: RwLock<Arc<View>>,
    plain: PlainUsers,
    failed: Mutex<FailedLogins>,
    audit: Mutex<LogLimiter>,
    secret: hmac::Key,
    entropy: Arc<dyn Entropy>,
    metrics: Arc<Metrics>,
}

/// Audit lines per second at most; the rest are counted in the next one.
const AUDIT_LINES_PER_SECOND: u32 = 10;

impl Security {
    pub fn new(config: &AuthConfig, entropy: Arc<dyn Entropy>, metrics: Arc<Metrics>) -> Result<Self, String> {
        let plain = match &config.plain_users_file {
            Some(path) => PlainUsers::load(path)?,
            None => PlainUsers::default(),
        };
        let mut secret = [0u8; 32];
        entropy.fill(&mut secret);
        Ok(Self {
            policy: Policy {
                enabled: config.authorizer,
                super_users: config.super_users.iter().cloned().collect(),
                allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
            },
            view: RwLock::new(Arc::new(View::default())),
            plain,
            failed: Mutex::new(FailedLogins::new(
                config.failed_authentication_delay_ms,
                config.failed_authentication_max_delay_ms,
            )),
            audit: Mutex::new(LogLimiter::default()),
            secret: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            entropy,
            metrics,
        })
    }

    pub fn authorizer_enabled(&self) -> bool {
        self.policy.enabled
    }

    /// Makes `state` the one in force, unless a newer one already is.
    pub fn install(&self, version: u64, state: SecurityState) {
        let mut view = self.view.write();
        if version < view.version {
            return;
        }
        let acls = AclIndex::new(&state.acls);
        self.metrics.acls.set(acls.len() as i64);
        let quotas = crate::quota::QuotaIndex::new(&state.quotas);
        *view = Arc::new(View {
            version,
            state,
            acls,
            quotas,
        });
    }

    pub fn view(&self) -> Arc<View> {
        self.view.read().clone()
    }

    /// Whether `who` may do `operation` on the resource; silent (for
    /// filtering what a listing shows).
    pub fn permits(&self, who: Requester<'_>, operation: Operation, kind: ResourceType, name: &str) -> bool {
        if !self.policy.enabled {
            return true;
        }
        let view = self.view.read().clone();
        self.policy.authorize(&view.acls, who, operation, kind, name)
    }

    /// Like `permits`, but a refusal is counted and logged (rate-limited).
    pub fn allows(&self, who: Requester<'_>, listener: &str, operation: Operation, kind: ResourceType, name: &str) -> bool {
        if self.permits(who, operation, kind, name) {
            return true;
        }
        self.metrics
            .authorization_denials
            .get_or_create(&DenialLabels {
                listener: listener.to_string(),
                resource_type: kind_name(kind),
                operation: operation_name(operation),
            })
            .inc();
        if let Some(suppressed) = self.audit.lock().admit(crate::clock::now_ms(), AUDIT_LINES_PER_SECOND) {
            tracing::info!(
                principal = %who.principal,
                host = who.host,
                listener,
                operation = operation_name(operation),
                resource_type = kind_name(kind),
                resource = name,
                suppressed,
                "authorization denied"
            );
        }
        false
    }

    /// Kafka's authorized-operations bits for one resource.
    pub fn authorized_operations(&self, who: Requester<'_>, kind: ResourceType, name: &str) -> i32 {
        let view = self.view.read().clone();
        self.policy.authorized_operations(&view.acls, who, kind, name)
    }

    /// Counts a successful authentication and forgets the address's failures.
    pub fn authenticated(&self, listener: &str, mechanism: &'static str, address: IpAddr) {
        self.failed.lock().succeeded(address);
        self.metrics
            .authentications
            .get_or_create(&AuthLabels {
                listener: listener.to_string(),
                mechanism,
            })
            .inc();
    }

    /// Counts and logs (rate-limited) a failed authentication; returns how
    /// long to hold the answer, so guessing passwords stays slow.
    pub fn authentication_failed(
        &self,
        listener: &str,
        mechanism: &'static str,
        peer: std::net::SocketAddr,
        who: &str,
        reason: &str,
    ) -> u64 {
        self.metrics
            .authentication_failures
            .get_or_create(&AuthLabels {
                listener: listener.to_string(),
                mechanism,
            })
            .inc();
        let now = crate::clock::now_ms();
        if let Some(suppressed) = self.audit.lock().admit(now, AUDIT_LINES_PER_SECOND) {
            tracing::warn!(listener, mechanism, %peer, user = who, reason, suppressed, "authentication failed");
        }
        self.failed.lock().failed(peer.ip(), now)
    }

    /// A random seed for non-secret choices (fetch session ids).
    pub fn random_seed(&self) -> u64 {
        let mut bytes = [0u8; 8];
        self.entropy.fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }
}

impl Credentials for Security {
    fn scram(&self, user: &str, alg: ScramAlgorithm) -> Option<ScramCredential> {
        self.view.read().state.credential(user, alg).cloned()
    }

    fn plain(&self, message: &[u8]) -> Result<String, PlainError> {
        self.plain.authenticate(message)
    }

    fn nonce(&self) -> String {
        use base64::Engine;
        let mut bytes = [0u8; 24];
        self.entropy.fill(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn fake_scram(&self, user: &str, alg: ScramAlgorithm) -> ScramCredential {
        let tag = hmac::sign(&self.secret, user.as_bytes());
        let bytes = tag.as_ref();
        let len = match alg {
            ScramAlgorithm::Sha256 => 32,
            ScramAlgorithm::Sha512 => 64,
        };
        ScramCredential {
            salt: bytes[..16].to_vec(),
            stored_key: bytes.iter().cycle().take(len).copied().collect(),
            server_key: bytes.iter().rev().cycle().take(len).copied().collect(),
            iterations: ScramAlgorithm::MIN_ITERATIONS,
        }
    }
}

pub fn kind_name(kind: ResourceType) -> &'static str {
    match kind {
        ResourceType::Any => "any",
        ResourceType::Topic => "topic",
        ResourceType::Group => "group",
        ResourceType::Cluster => "cluster",
        ResourceType::TransactionalId => "transactional_id",
        ResourceType::DelegationToken => "delegation_token",
        ResourceType::User => "user",
    }
}

pub fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Any => "any",
        Operation::All => "all",
        Operation::Read => "read",
        Operation::Write => "write",
        Operation::Create => "create",
        Operation::Delete => "delete",
        Operation::Alter => "alter",
        Operation::Describe => "describe",
        Operation::ClusterAction => "cluster_action",
        Operation::DescribeConfigs => "describe_configs",
        Operation::AlterConfigs => "alter_configs",
        Operation::IdempotentWrite => "idempotent_write",
        Operation::CreateTokens => "create_tokens",
        Operation::DescribeTokens => "describe_tokens",
    }
}

/// The requester of a request.
pub fn requester<'a>(principal: &'a Principal, host: &'a str) -> Requester<'a> {
    Requester { principal, host }
}
