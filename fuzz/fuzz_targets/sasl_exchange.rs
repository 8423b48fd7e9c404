//! Any bytes as SASL tokens, in any order: a connection's session answers
//! each with a step or a failure, never panics. The first byte picks the
//! mechanism handshaken; the rest is split at 0xFF into tokens.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sediment::security::listener::{SaslMechanism, SecurityProtocol};
use sediment::security::plain::{PlainError, PlainUsers};
use sediment::security::sasl::{Credentials, ListenerSecurity, Session};
use sediment::security::scram::{ScramAlgorithm, ScramCredential};
use sediment::security::Principal;
use std::sync::Arc;

struct Fixed(PlainUsers);

impl Credentials for Fixed {
    fn scram(&self, user: &str, alg: ScramAlgorithm) -> Option<ScramCredential> {
        (user == "u").then(|| ScramCredential::from_salted_password(alg, b"salt", &[7; 64], 4096))
    }
    fn plain(&self, message: &[u8]) -> Result<String, PlainError> {
        self.0.authenticate(message)
    }
    fn nonce(&self) -> String {
        "nonce".into()
    }
    fn fake_scram(&self, _user: &str, alg: ScramAlgorithm) -> ScramCredential {
        ScramCredential::from_salted_password(alg, b"fake", &[1; 64], 4096)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let listener = Arc::new(ListenerSecurity {
        name: "F".into(),
        protocol: SecurityProtocol::SaslPlaintext,
        mechanisms: SaslMechanism::ALL.to_vec(),
    });
    let credentials = Fixed(PlainUsers::parse("[users]\nu = \"p\"").unwrap_or_default());
    let mut session = Session::new(listener, Principal::anonymous(), 1000);
    let mechanism = SaslMechanism::ALL[pick as usize % 3];
    let _ = session.handshake(mechanism.name());
    for (i, token) in rest.split(|b| *b == 0xFF).enumerate() {
        let _ = session.authenticate(token, &credentials, i as i64);
        if i % 3 == 2 {
            let _ = session.handshake(mechanism.name());
        }
    }
});
