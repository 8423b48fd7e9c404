//! SASL PLAIN (RFC 4616) against the users of `plain_users_file`. Pure but
//! for reading that file.

use std::collections::BTreeMap;
use std::path::Path;

use aws_lc_rs::constant_time;
use serde::Deserialize;

/// The PLAIN users, from a TOML file with a `[users]` table of
/// `name = "password"` lines.
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainUsers {
    #[serde(default)]
    users: BTreeMap<String, String>,
}

impl std::fmt::Debug for PlainUsers {
    // Never the passwords, not even in a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainUsers")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PlainUsers {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read plain_users_file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("invalid plain_users_file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let users: Self = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if let Some(name) = users.users.keys().find(|n| n.is_empty()) {
            return Err(format!("user name {name:?} is empty"));
        }
        Ok(users)
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user a PLAIN message authenticates, if its password is right.
    pub fn authenticate(&self, message: &[u8]) -> Result<String, PlainError> {
        let mut parts = message.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(PlainError::Malformed);
        };
        let user = std::str::from_utf8(user).map_err(|_| PlainError::Malformed)?;
        if user.is_empty() || password.is_empty() {
            return Err(PlainError::Malformed);
        }
        if !authzid.is_empty() && authzid != user.as_bytes() {
            return Err(PlainError::AuthorizationId);
        }
        // Compared in constant time, and against something even for an
        // unknown user, so timing tells nothing.
        let expected = self.users.get(user);
        let against = expected.map_or(&b"\x00unknown user"[..], |p| p.as_bytes());
        let equal = constant_time::verify_slices_are_equal(against, password).is_ok();
        if equal && expected.is_some() {
            Ok(user.to_string())
        } else {
            Err(PlainError::InvalidCredentials)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("malformed PLAIN message")]
    Malformed,
    #[error("an authorization id different from the user name")]
    AuthorizationId,
    #[error("invalid credentials")]
    InvalidCredentials,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_password_only() {
        let users = PlainUsers::parse("[users]\nalice = \"s3cret\"\n\"bob smith\" = \"x\"\n").unwrap();
        assert_eq!(users.authenticate(b"\0alice\0s3cret"), Ok("alice".into()));
        assert_eq!(users.authenticate(b"alice\0alice\0s3cret"), Ok("alice".into()));
        assert_eq!(users.authenticate(b"\0bob smith\0x"), Ok("bob smith".into()));
        assert_eq!(users.authenticate(b"\0alice\0wrong"), Err(PlainError::InvalidCredentials));
        assert_eq!(users.authenticate(b"\0nobody\0s3cret"), Err(PlainError::InvalidCredentials));
        assert_eq!(users.authenticate(b"bob\0alice\0s3cret"), Err(PlainError::AuthorizationId));
        for bad in [&b""[..], b"\0alice", b"\0alice\0", b"\0\0pw", b"\0a\0b\0c", b"\0\xff\0pw"] {
            assert_eq!(users.authenticate(bad), Err(PlainError::Malformed));
        }
        assert!(!format!("{users:?}").contains("s3cret"));
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(PlainUsers::parse("[users]\n\"\" = \"x\"").is_err());
        assert!(PlainUsers::parse("[users]\nalice = 3").is_err());
        assert!(PlainUsers::parse("other = 1").is_err());
        assert!(PlainUsers::parse("").unwrap().is_empty());
    }
}
