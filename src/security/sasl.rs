//! One connection's authentication: which requests it may send in its
//! state, and the SASL exchange (SaslHandshake v1, then SaslAuthenticate
//! tokens, KIP-152), including KIP-368 re-authentication. Pure: credentials,
//! nonces and the time come in from the caller.

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

use super::listener::{SaslMechanism, SecurityProtocol};
use super::plain::PlainError;
use super::scram::{AwaitingFinal, ClientFirst, ScramAlgorithm, ScramCredential};
use super::Principal;

/// What a connection's listener asks of it.
#[derive(Debug, Clone)]
pub struct ListenerSecurity {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub mechanisms: Vec<SaslMechanism>,
}

/// Where SASL's secrets come from.
pub trait Credentials {
    fn scram(&self, user: &str, alg: ScramAlgorithm) -> Option<ScramCredential>;
    /// The user a PLAIN message authenticates.
    fn plain(&self, message: &[u8]) -> Result<String, PlainError>;
    /// A fresh server nonce (printable, no comma).
    fn nonce(&self) -> String;
    /// What an unknown user's exchange runs against: the same for the same
    /// name, so retries cannot tell it from a real one.
    fn fake_scram(&self, user: &str, alg: ScramAlgorithm) -> ScramCredential;
}

#[derive(Debug)]
enum State {
    /// Authenticated, or nothing to authenticate (no SASL on the listener);
    /// a SASL session ends at `expires_ms` unless re-authenticated.
    Open {
        expires_ms: Option<i64>,
    },
    AwaitHandshake,
    AwaitToken(SaslMechanism),
    AwaitScramFinal(Box<AwaitingFinal>),
}

/// Whether a request may be served in the connection's state.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Serve,
    /// Close the connection, as Kafka does, for this reason.
    Close(String),
}

/// The result of one SaslAuthenticate token.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this token back and wait for the next.
    Continue(Vec<u8>),
    /// Authenticated: send this (possibly empty) token, with the session's
    /// lifetime when re-authentication is on.
    Done { token: Vec<u8>, session_lifetime_ms: i64 },
    /// SASL_AUTHENTICATION_FAILED with this message, then close.
    Failed { message: String, reason: String },
}

#[derive(Debug)]
pub struct Session {
    pub listener: Arc<ListenerSecurity>,
    pub principal: Principal,
    /// Set once a SASL exchange succeeded: re-authentication must keep it.
    authenticated: bool,
    state: State,
    /// The user the last SASL exchange named, for the audit log.
    claimed_user: Option<String>,
    /// 0: sessions do not expire (Kafka's connections.max.reauth.ms).
    max_reauth_ms: i64,
}

impl Session {
    /// `principal` is the TLS client's (mTLS) or anonymous.
    pub fn new(listener: Arc<ListenerSecurity>, principal: Principal, max_reauth_ms: i64) -> Self {
        let state = if listener.protocol.sasl() {
            State::AwaitHandshake
        } else {
            State::Open { expires_ms: None }
        };
        Self {
            listener,
            principal,
            authenticated: false,
            state,
            claimed_user: None,
            max_reauth_ms,
        }
    }

    /// Whether the connection has authenticated (or needs not).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    pub fn admit(&self, api: ApiKey, now_ms: i64) -> Admission {
        match &self.state {
            State::Open { expires_ms } => match expires_ms {
                Some(at) if now_ms >= *at && api != ApiKey::SaslHandshake => {
                    Admission::Close("the SASL session expired without re-authentication".into())
                }
                _ => Admission::Serve,
            },
            State::AwaitHandshake if matches!(api, ApiKey::ApiVersions | ApiKey::SaslHandshake) => Admission::Serve,
            State::AwaitToken(_) | State::AwaitScramFinal(_) if api == ApiKey::SaslAuthenticate => Admission::Serve,
            _ => Admission::Close(format!("unexpected {api:?} request during SASL authentication")),
        }
    }

    /// SaslHandshake: `Ok` when the mechanism is enabled here (the next
    /// requests carry its tokens); `Err(error code)` otherwise, and the
    /// connection closes. Either way the listener's mechanisms are listed.
    pub fn handshake(&mut self, mechanism: &str) -> Result<(), i16> {
        use kafka_protocol::ResponseError::{IllegalSaslState, UnsupportedSaslMechanism};
        if !self.listener.protocol.sasl() {
            return Err(IllegalSaslState.code());
        }
        match self.state {
            State::AwaitHandshake | State::Open { .. } => {}
            _ => return Err(IllegalSaslState.code()),
        }
        let Some(mechanism) = SaslMechanism::parse(mechanism).filter(|m| self.listener.mechanisms.contains(m)) else {
            return Err(UnsupportedSaslMechanism.code());
        };
        self.state = State::AwaitToken(mechanism);
        Ok(())
    }

    /// The mechanism of the exchange under way, for metrics ("none" outside one).
    pub fn mechanism_in_progress(&self) -> &'static str {
        match &self.state {
            State::AwaitToken(m) => m.name(),
            State::AwaitScramFinal(awaiting) => awaiting.algorithm().mechanism().name(),
            _ => "none",
        }
    }

    /// The user name the last exchange claimed, for the audit log.
    pub fn attempted_user(&self) -> Option<String> {
        self.claimed_user.clone()
    }

    pub fn mechanism_names(&self) -> Vec<&'static str> {
        self.listener.mechanisms.iter().map(|m| m.name()).collect()
    }

    /// One SaslAuthenticate token.
    pub fn authenticate(&mut self, token: &[u8], credentials: &dyn Credentials, now_ms: i64) -> AuthStep {
        let state = std::mem::replace(&mut self.state, State::AwaitHandshake);
        let (mechanism, result) = match state {
            State::AwaitToken(SaslMechanism::Plain) => {
                let user = token.split(|b| *b == 0).nth(1).map(|u| String::from_utf8_lossy(u).into_owned());
                self.claimed_user = user;
                (SaslMechanism::Plain, credentials.plain(token).map_err(|e| e.to_string()))
            }
            State::AwaitToken(mechanism) => {
                let Some(alg) = ScramAlgorithm::of(mechanism) else {
                    return self.fail(mechanism, "no such mechanism".into());
                };
                let first = match ClientFirst::parse(token) {
                    Ok(first) => first,
                    Err(e) => return self.fail(mechanism, e.to_string()),
                };
                self.claimed_user = Some(first.username.clone());
                let known = credentials.scram(&first.username, alg);
                let fake = credentials.fake_scram(&first.username, alg);
                let (server_first, awaiting) = first.respond(alg, known, fake, &credentials.nonce());
                self.state = State::AwaitScramFinal(Box::new(awaiting));
                return AuthStep::Continue(server_first.into_bytes());
            }
            State::AwaitScramFinal(awaiting) => {
                let user = awaiting.username.clone();
                let mechanism = awaiting_mechanism(&awaiting);
                match awaiting.verify(token) {
                    Ok(server_final) => return self.succeed(mechanism, user, server_final.into_bytes(), now_ms),
                    Err(e) => (mechanism, Err(e.to_string())),
                }
            }
            other => {
                self.state = other;
                return AuthStep::Failed {
                    message: "SaslAuthenticate before SaslHandshake".into(),
                    reason: "out of order".into(),
                };
            }
        };
        match result {
            Ok(user) => self.succeed(mechanism, user, Vec::new(), now_ms),
            Err(reason) => self.fail(mechanism, reason),
        }
    }

    fn succeed(&mut self, mechanism: SaslMechanism, user: String, token: Vec<u8>, now_ms: i64) -> AuthStep {
        let principal = Principal::user(&user);
        if self.authenticated && principal != self.principal {
            return self.fail(mechanism, format!("re-authentication as {principal}, not {}", self.principal));
        }
        self.principal = principal;
        self.authenticated = true;
        let expires_ms = (self.max_reauth_ms > 0).then(|| now_ms.saturating_add(self.max_reauth_ms));
        self.state = State::Open { expires_ms };
        AuthStep::Done {
            token,
            session_lifetime_ms: self.max_reauth_ms,
        }
    }

    fn fail(&mut self, mechanism: SaslMechanism, reason: String) -> AuthStep {
        self.state = State::AwaitHandshake;
        AuthStep::Failed {
            message: format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"),
            reason,
        }
    }
}

fn awaiting_mechanism(awaiting: &AwaitingFinal) -> SaslMechanism {
    awaiting.algorithm().mechanism()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::plain::PlainUsers;
    use crate::security::scram::client;

    struct Fixed {
        plain: PlainUsers,
        scram: ScramCredential,
    }

    impl Credentials for Fixed {
        fn scram(&self, user: &str, alg: ScramAlgorithm) -> Option<ScramCredential> {
            (user == "alice" && alg == ScramAlgorithm::Sha512).then(|| self.scram.clone())
        }
        fn plain(&self, message: &[u8]) -> Result<String, PlainError> {
            self.plain.authenticate(message)
        }
        fn nonce(&self) -> String {
            "servernonce".into()
        }
        fn fake_scram(&self, user: &str, alg: ScramAlgorithm) -> ScramCredential {
            ScramCredential::from_password(alg, user, b"fake", 4096)
        }
    }

    fn fixed() -> Fixed {
        Fixed {
            plain: PlainUsers::parse("[users]\nbob = \"pw\"").unwrap(),
            scram: ScramCredential::from_password(ScramAlgorithm::Sha512, "secret", b"salt", 4096),
        }
    }

    fn sasl_session(reauth_ms: i64) -> Session {
        let listener = Arc::new(ListenerSecurity {
            name: "SASL".into(),
            protocol: SecurityProtocol::SaslPlaintext,
            mechanisms: SaslMechanism::ALL.to_vec(),
        });
        Session::new(listener, Principal::anonymous(), reauth_ms)
    }

    fn scram_login(s: &mut Session, password: &str, now: i64) -> AuthStep {
        let creds = fixed();
        assert_eq!(s.handshake("SCRAM-SHA-512"), Ok(()));
        let first = client::first("alice", "cn");
        let AuthStep::Continue(server_first) = s.authenticate(first.as_bytes(), &creds, now) else {
            panic!("no server-first")
        };
        let server_first = String::from_utf8(server_first).unwrap();
        let (last, _) = client::last(ScramAlgorithm::Sha512, password, &first, &server_first).unwrap();
        s.authenticate(last.as_bytes(), &creds, now)
    }

    #[test]
    fn only_the_handshake_is_served_before_authentication() {
        let s = sasl_session(0);
        assert_eq!(s.admit(ApiKey::ApiVersions, 0), Admission::Serve);
        assert_eq!(s.admit(ApiKey::SaslHandshake, 0), Admission::Serve);
        assert!(matches!(s.admit(ApiKey::Metadata, 0), Admission::Close(_)));
        assert!(matches!(s.admit(ApiKey::SaslAuthenticate, 0), Admission::Close(_)));
    }

    #[test]
    fn scram_and_plain_authenticate_and_set_the_principal() {
        let mut s = sasl_session(0);
        assert!(matches!(
            scram_login(&mut s, "secret", 0),
            AuthStep::Done {
                session_lifetime_ms: 0,
                ..
            }
        ));
        assert_eq!(s.principal, Principal::user("alice"));
        assert_eq!(s.admit(ApiKey::Produce, i64::MAX), Admission::Serve);

        let mut s = sasl_session(0);
        assert_eq!(s.handshake("PLAIN"), Ok(()));
        assert!(matches!(s.admit(ApiKey::Metadata, 0), Admission::Close(_)));
        assert!(matches!(s.authenticate(b"\0bob\0pw", &fixed(), 0), AuthStep::Done { .. }));
        assert_eq!(s.principal, Principal::user("bob"));
    }

    #[test]
    fn failures_say_invalid_credentials_whatever_the_cause() {
        let mut s = sasl_session(0);
        let AuthStep::Failed { message, .. } = scram_login(&mut s, "wrong", 0) else {
            panic!()
        };
        assert!(message.contains("invalid credentials with SASL mechanism SCRAM-SHA-512"));
        assert!(matches!(s.admit(ApiKey::Metadata, 0), Admission::Close(_)));
        let mut s = sasl_session(0);
        s.handshake("PLAIN").unwrap();
        assert!(matches!(s.authenticate(b"garbage", &fixed(), 0), AuthStep::Failed { .. }));
        let mut s = sasl_session(0);
        assert!(matches!(s.authenticate(b"n,,n=alice,r=x", &fixed(), 0), AuthStep::Failed { .. }));
        assert_eq!(s.principal, Principal::anonymous());
    }

    #[test]
    fn handshakes_refuse_unknown_mechanisms_and_non_sasl_listeners() {
        let mut s = sasl_session(0);
        assert_eq!(
            s.handshake("GSSAPI"),
            Err(kafka_protocol::ResponseError::UnsupportedSaslMechanism.code())
        );
        s.handshake("PLAIN").unwrap();
        assert_eq!(s.handshake("PLAIN"), Err(kafka_protocol::ResponseError::IllegalSaslState.code()));
        let plain = Arc::new(ListenerSecurity {
            name: "P".into(),
            protocol: SecurityProtocol::Plaintext,
            mechanisms: vec![],
        });
        let mut s = Session::new(plain, Principal::anonymous(), 0);
        assert!(s.is_open());
        assert_eq!(s.admit(ApiKey::Produce, 0), Admission::Serve);
        assert_eq!(s.handshake("PLAIN"), Err(kafka_protocol::ResponseError::IllegalSaslState.code()));
    }

    #[test]
    fn sessions_expire_unless_reauthenticated_as_the_same_principal() {
        let mut s = sasl_session(1000);
        assert!(matches!(
            scram_login(&mut s, "secret", 0),
            AuthStep::Done {
                session_lifetime_ms: 1000,
                ..
            }
        ));
        assert_eq!(s.admit(ApiKey::Fetch, 999), Admission::Serve);
        assert!(matches!(s.admit(ApiKey::Fetch, 1000), Admission::Close(_)));
        assert_eq!(s.admit(ApiKey::SaslHandshake, 1000), Admission::Serve);
        assert!(matches!(scram_login(&mut s, "secret", 900), AuthStep::Done { .. }));
        assert_eq!(s.admit(ApiKey::Fetch, 1899), Admission::Serve);
        // Re-authenticating as somebody else is refused.
        s.handshake("PLAIN").unwrap();
        assert!(matches!(s.authenticate(b"\0bob\0pw", &fixed(), 1000), AuthStep::Failed { .. }));
    }
}
