//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as a server, and the
//! credentials it checks against. The primitives (HMAC, PBKDF2, SHA-2) are
//! aws-lc-rs's; this file holds only the message grammar and the proof check.
//! Pure: the server's nonce is passed in.

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::listener::SaslMechanism;

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramAlgorithm {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramAlgorithm {
    /// Kafka's bounds on iterations (ScramMechanism's min and max).
    pub const MIN_ITERATIONS: i32 = 4096;
    pub const MAX_ITERATIONS: i32 = 16384;

    pub fn of(mechanism: SaslMechanism) -> Option<Self> {
        match mechanism {
            SaslMechanism::ScramSha256 => Some(Self::Sha256),
            SaslMechanism::ScramSha512 => Some(Self::Sha512),
            SaslMechanism::Plain => None,
        }
    }

    pub fn mechanism(self) -> SaslMechanism {
        match self {
            Self::Sha256 => SaslMechanism::ScramSha256,
            Self::Sha512 => SaslMechanism::ScramSha512,
        }
    }

    /// Kafka's wire number (AlterUserScramCredentials, DescribeUserScramCredentials).
    pub fn from_wire(n: i8) -> Option<Self> {
        match n {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    pub fn wire(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_algorithm(), key), data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }

    fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this hash's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let alg = match self {
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        };
        let mut out = vec![0; self.output_len()];
        let iterations = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(alg, iterations, salt, password, &mut out);
        out
    }
}

/// What the broker keeps of a SCRAM password: never the password, nor the
/// salted password, only what verifies a proof (RFC 5802 section 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub stored_key: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl ScramCredential {
    /// From the salted password a client sends in AlterUserScramCredentials.
    pub fn from_salted_password(alg: ScramAlgorithm, salt: &[u8], salted_password: &[u8], iterations: i32) -> Self {
        let client_key = alg.hmac(salted_password, b"Client Key");
        Self {
            salt: salt.to_vec(),
            stored_key: alg.hash(&client_key),
            server_key: alg.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }

    pub fn from_password(alg: ScramAlgorithm, password: &str, salt: &[u8], iterations: i32) -> Self {
        let salted = alg.salted_password(password.as_bytes(), salt, iterations.max(1) as u32);
        Self::from_salted_password(alg, salt, &salted, iterations)
    }
}

/// Why a SCRAM exchange failed. Every kind answers the client the same
/// SASL_AUTHENTICATION_FAILED; the kind is for the log and the metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("an authorization id different from the user name")]
    AuthorizationId,
    #[error("delegation tokens are not supported")]
    TokenAuth,
    #[error("nonce mismatch")]
    Nonce,
    #[error("invalid credentials")]
    InvalidCredentials,
}

/// The client's first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub username: String,
    gs2_header: String,
    bare: String,
    client_nonce: String,
}

/// The server's state between its first message and the client's final one.
#[derive(Debug, Clone)]
pub struct AwaitingFinal {
    alg: ScramAlgorithm,
    credential: ScramCredential,
    /// False when the user is unknown: the exchange runs to its end with a
    /// made-up credential, so a stranger cannot tell users from non-users.
    known: bool,
    gs2_header: String,
    nonce: String,
    /// client-first-message-bare "," server-first-message
    auth_prefix: String,
    pub username: String,
}

fn utf8(msg: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// saslname of RFC 5802: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3).ok_or(ScramError::Malformed("bad escape in user name"))?;
        out.push(match code {
            "=2C" => ',',
            "=3D" => '=',
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ClientFirst {
    pub fn parse(msg: &[u8]) -> Result<Self, ScramError> {
        let msg = utf8(msg)?;
        let mut parts = msg.splitn(3, ',');
        let cbind = parts.next().ok_or(ScramError::Malformed("empty"))?;
        let authzid = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let bare = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        let mut fields = bare.split(',');
        let mut first = fields.next().ok_or(ScramError::Malformed("no user name"))?;
        if first.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extensions are not supported"));
        }
        let username = decode_saslname(first.strip_prefix("n=").ok_or(ScramError::Malformed("no user name"))?)?;
        first = fields.next().ok_or(ScramError::Malformed("no nonce"))?;
        let client_nonce = first.strip_prefix("r=").ok_or(ScramError::Malformed("no nonce"))?.to_string();
        if client_nonce.is_empty() || username.is_empty() {
            return Err(ScramError::Malformed("empty user name or nonce"));
        }
        for extension in fields {
            if extension == "tokenauth=true" {
                return Err(ScramError::TokenAuth);
            }
        }
        if !authzid.is_empty() {
            let id = decode_saslname(authzid.strip_prefix("a=").ok_or(ScramError::Malformed("bad authorization id"))?)?;
            if id != username {
                return Err(ScramError::AuthorizationId);
            }
        }
        Ok(Self {
            username,
            gs2_header: format!("{cbind},{authzid},"),
            bare: bare.to_string(),
            client_nonce,
        })
    }

    /// The server's first message for this user. `credential` is `None` for
    /// an unknown user; `fake` then stands in for it.
    pub fn respond(
        self,
        alg: ScramAlgorithm,
        credential: Option<ScramCredential>,
        fake: ScramCredential,
        server_nonce: &str,
    ) -> (String, AwaitingFinal) {
        let known = credential.is_some();
        let credential = credential.unwrap_or(fake);
        let nonce = format!("{}{server_nonce}", self.client_nonce);
        let server_first = format!("r={nonce},s={},i={}", BASE64.encode(&credential.salt), credential.iterations);
        let auth_prefix = format!("{},{server_first}", self.bare);
        let state = AwaitingFinal {
            alg,
            credential,
            known,
            gs2_header: self.gs2_header,
            nonce,
            auth_prefix,
            username: self.username,
        };
        (server_first, state)
    }
}

impl AwaitingFinal {
    pub fn algorithm(&self) -> ScramAlgorithm {
        self.alg
    }

    /// Checks the client's final message; on success, the server's final
    /// message (its signature, which proves the server knew the credential).
    pub fn verify(self, msg: &[u8]) -> Result<String, ScramError> {
        let msg = utf8(msg)?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut fields = without_proof.split(',');
        let binding = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding"))?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if BASE64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::ChannelBinding);
        }
        // librdkafka before 2.6 sends the client nonce twice (client nonce,
        // then the whole nonce); Kafka accepts a nonce that ends with the
        // right one since 3.8.1, and so do we. The proof covers the message
        // as sent either way.
        if !nonce.ends_with(&self.nonce) {
            return Err(ScramError::Nonce);
        }
        let proof = BASE64.decode(proof).map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let signature = self.alg.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::InvalidCredentials);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let matches = constant_time::verify_slices_are_equal(&self.alg.hash(&client_key), &self.credential.stored_key).is_ok();
        if !matches || !self.known {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = self.alg.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

mod base64_bytes {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

/// The client's side, for tests and the inter-broker client.
pub mod client {
    use super::*;

    /// client-first-message with no authorization id.
    pub fn first(username: &str, nonce: &str) -> String {
        let name = username.replace('=', "=3D").replace(',', "=2C");
        format!("n,,n={name},r={nonce}")
    }

    /// client-final-message answering `server_first`, and the server
    /// signature the server's final message must carry.
    pub fn last(alg: ScramAlgorithm, password: &str, client_first: &str, server_first: &str) -> Option<(String, String)> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for field in server_first.split(',') {
            if let Some(v) = field.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = field.strip_prefix("s=") {
                salt = BASE64.decode(v).ok();
            } else if let Some(v) = field.strip_prefix("i=") {
                iterations = v.parse::<u32>().ok();
            }
        }
        let (nonce, salt, iterations) = (nonce?, salt?, iterations?);
        if !(1..=ScramAlgorithm::MAX_ITERATIONS as u32).contains(&iterations) {
            return None;
        }
        let salted = alg.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = alg.hmac(&salted, b"Client Key");
        let stored_key = alg.hash(&client_key);
        let bare = client_first.strip_prefix("n,,")?;
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = alg.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = alg.hmac(&salted, b"Server Key");
        let server_signature = alg.hmac(&server_key, auth_message.as_bytes());
        Some((
            format!("{without_proof},p={}", BASE64.encode(proof)),
            format!("v={}", BASE64.encode(server_signature)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> ScramCredential {
        ScramCredential::from_password(ScramAlgorithm::Sha256, "no such password", b"fake salt", 4096)
    }

    /// RFC 7677's example exchange, byte for byte.
    #[test]
    fn rfc7677_example() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = ScramCredential::from_password(ScramAlgorithm::Sha256, "pencil", &salt, 4096);
        let first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.username, "user");
        let (server_first, state) = first.respond(ScramAlgorithm::Sha256, Some(credential), fake(), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let server_final = state
            .verify(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(server_final, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    fn exchange(alg: ScramAlgorithm, stored: Option<&str>, tried: &str) -> Result<(), ScramError> {
        let credential = stored.map(|p| ScramCredential::from_password(alg, p, b"salt", 4096));
        let client_first = client::first("a,b=c", "cnonce");
        let first = ClientFirst::parse(client_first.as_bytes())?;
        assert_eq!(first.username, "a,b=c");
        let (server_first, state) = first.respond(alg, credential, fake(), "snonce");
        let (client_final, expected) = client::last(alg, tried, &client_first, &server_first).unwrap();
        let server_final = state.verify(client_final.as_bytes())?;
        assert_eq!(server_final, expected);
        Ok(())
    }

    #[test]
    fn both_algorithms_accept_the_password_and_refuse_others() {
        for alg in [ScramAlgorithm::Sha256, ScramAlgorithm::Sha512] {
            assert_eq!(exchange(alg, Some("secret"), "secret"), Ok(()));
            assert_eq!(exchange(alg, Some("secret"), "Secret"), Err(ScramError::InvalidCredentials));
            // An unknown user fails the same way, at the same step.
            assert_eq!(exchange(alg, None, "secret"), Err(ScramError::InvalidCredentials));
        }
    }

    #[test]
    fn a_proof_for_the_fake_credential_of_an_unknown_user_is_still_refused() {
        let first = ClientFirst::parse(b"n,,n=ghost,r=x").unwrap();
        let (server_first, state) = first.respond(ScramAlgorithm::Sha256, None, fake(), "y");
        let (client_final, _) = client::last(ScramAlgorithm::Sha256, "no such password", "n,,n=ghost,r=x", &server_first).unwrap();
        assert_eq!(state.verify(client_final.as_bytes()), Err(ScramError::InvalidCredentials));
    }

    /// librdkafka before 2.6 repeats the client nonce in its final message.
    #[test]
    fn old_librdkafkas_repeated_client_nonce_is_accepted() {
        let alg = ScramAlgorithm::Sha256;
        let credential = ScramCredential::from_password(alg, "pw", b"salt", 4096);
        let (server_first, state) = ClientFirst::parse(b"n,,n=u,r=cn")
            .unwrap()
            .respond(alg, Some(credential), fake(), "sn");
        let (proper, _) = client::last(alg, "pw", "n,,n=u,r=cn", &server_first).unwrap();
        let doubled = proper.replace("r=cnsn", "r=cncnsn");
        let (without_proof, _) = doubled.rsplit_once(",p=").unwrap();
        // Recompute the proof over the message as old librdkafka sends it.
        let salted = alg.salted_password(b"pw", b"salt", 4096);
        let client_key = alg.hmac(&salted, b"Client Key");
        let auth = format!("n=u,r=cn,{server_first},{without_proof}");
        let signature = alg.hmac(&alg.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let message = format!("{without_proof},p={}", BASE64.encode(proof));
        assert!(state.clone().verify(message.as_bytes()).is_ok());
        assert_eq!(state.verify(b"c=biws,r=cnsnX,p=AAAA"), Err(ScramError::Nonce));
    }

    #[test]
    fn malformed_and_hostile_messages_are_errors() {
        for bad in [
            &b""[..],
            b"n",
            b"n,,",
            b"n,,r=x",
            b"n,,n=,r=x",
            b"n,,n=u",
            b"n,,n=a=zz,r=x",
            b"n,,n=a=",
            b"x,,n=u,r=x",
            b"\xff\xfe",
            b"n,,m=ext,n=u,r=x",
        ] {
            assert!(ClientFirst::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(ClientFirst::parse(b"p=tls-unique,,n=u,r=x"), Err(ScramError::ChannelBinding));
        assert_eq!(ClientFirst::parse(b"n,a=other,n=u,r=x"), Err(ScramError::AuthorizationId));
        assert!(ClientFirst::parse(b"n,a=u,n=u,r=x").is_ok());
        assert_eq!(ClientFirst::parse(b"n,,n=u,r=x,tokenauth=true"), Err(ScramError::TokenAuth));

        let state = || {
            let first = ClientFirst::parse(b"n,,n=u,r=abc").unwrap();
            first.respond(ScramAlgorithm::Sha256, Some(fake()), fake(), "def").1
        };
        assert_eq!(state().verify(b"c=biws,r=abcdef"), Err(ScramError::Malformed("no proof")));
        assert_eq!(state().verify(b"c=biws,r=abcXXX,p=AAAA"), Err(ScramError::Nonce));
        assert_eq!(state().verify(b"c=eSws,r=abcdef,p=AAAA"), Err(ScramError::ChannelBinding));
        assert_eq!(
            state().verify(b"c=biws,r=abcdef,p=!!"),
            Err(ScramError::Malformed("proof is not base64"))
        );
        assert_eq!(state().verify(b"c=biws,r=abcdef,p=AAAA"), Err(ScramError::InvalidCredentials));
    }

    #[test]
    fn credentials_round_trip_as_base64_json() {
        let c = ScramCredential::from_password(ScramAlgorithm::Sha512, "pw", b"\x00\x01salt", 8192);
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("pw\""));
        assert_eq!(serde_json::from_str::<ScramCredential>(&json).unwrap(), c);
        assert_eq!(c.stored_key.len(), 64);
    }
}
