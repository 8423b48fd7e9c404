//! A minimal Kafka client connection on the same codec as the server side:
//! brokers use it for each other (followers' fetches, transaction markers
//! and verification), and the command line for its requests. Responses are
//! read with a bound on their size. It speaks TLS (verifying the server
//! against a CA) and SASL PLAIN or SCRAM.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::security::listener::SaslMechanism;
use crate::security::runtime::Entropy;
use crate::security::scram::{client as scram_client, ScramAlgorithm};

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// How a client reaches a listener: a broker the other brokers'
/// inter-broker listener, the command line the listener it is pointed at.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// Set when that listener serves TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Set when it serves SASL.
    pub sasl: Option<SaslLogin>,
}

#[derive(Clone)]
pub struct SaslLogin {
    pub mechanism: SaslMechanism,
    pub user: String,
    pub password: String,
    /// SCRAM's client nonces.
    pub entropy: Arc<dyn Entropy>,
}

/// The broker refused the login: its Kafka error code (for example
/// SASL_AUTHENTICATION_FAILED or UNSUPPORTED_SASL_MECHANISM) and message.
#[derive(Debug, thiserror::Error)]
#[error("authentication failed ({code}): {message}")]
pub struct AuthenticationRefused {
    pub code: i16,
    pub message: String,
}

/// Whether a response's length prefix is the start of a TLS record (an
/// alert or a handshake, version 3.x): what a TLS listener sends back to a
/// client that spoke plain text to it.
fn speaks_tls(length_prefix: i32) -> bool {
    let [record_type, major, minor, _] = length_prefix.to_be_bytes();
    matches!(record_type, 0x15 | 0x16) && major == 0x03 && minor <= 0x04
}

pub struct Connection {
    stream: Box<dyn Stream>,
    next_correlation_id: i32,
    client_id: StrBytes,
    max_response_bytes: usize,
}

impl Connection {
    pub async fn connect(
        address: &str,
        client_id: String,
        timeout: Duration,
        max_response_bytes: usize,
        security: &ClientSecurity,
    ) -> anyhow::Result<Self> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {address} timed out"))??;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match &security.tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = address.rsplit_once(':').map_or(address, |(h, _)| h).trim_matches(['[', ']']);
                let name = rustls_pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| anyhow::anyhow!("{host} is not a name TLS can verify: {e}"))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| anyhow::anyhow!("TLS handshake with {address} timed out"))??;
                Box::new(tls)
            }
        };
        let mut connection = Self {
            stream,
            next_correlation_id: 0,
            client_id: StrBytes::from_string(client_id),
            max_response_bytes,
        };
        if let Some(login) = &security.sasl {
            connection
                .authenticate(login, timeout)
                .await
                .map_err(|e| e.context(format!("SASL {} as {} at {address}", login.mechanism, login.user)))?;
        }
        Ok(connection)
    }

    async fn authenticate(&mut self, login: &SaslLogin, timeout: Duration) -> anyhow::Result<()> {
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(login.mechanism.name()));
        let answer: SaslHandshakeResponse = self.call(ApiKey::SaslHandshake, 1, &handshake, timeout).await?;
        if answer.error_code != 0 {
            let enabled: Vec<String> = answer.mechanisms.iter().map(|m| m.to_string()).collect();
            return Err(AuthenticationRefused {
                code: answer.error_code,
                message: format!("the listener offers {}", enabled.join(", ")),
            }
            .into());
        }
        let Some(alg) = ScramAlgorithm::of(login.mechanism) else {
            self.token(format!("\0{}\0{}", login.user, login.password).into_bytes(), timeout)
                .await?;
            return Ok(());
        };
        let mut bytes = [0u8; 18];
        login.entropy.fill(&mut bytes);
        let nonce = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        let first = scram_client::first(&login.user, &nonce);
        let server_first = self.token(first.clone().into_bytes(), timeout).await?;
        let server_first = String::from_utf8(server_first.to_vec())?;
        let (last, expected) = scram_client::last(alg, &login.password, &first, &server_first)
            .ok_or_else(|| anyhow::anyhow!("the server's first SCRAM message is malformed"))?;
        let server_final = self.token(last.into_bytes(), timeout).await?;
        // The server proves it knew the credential too.
        anyhow::ensure!(
            server_final.as_ref() == expected.as_bytes(),
            "the server's SCRAM signature is wrong"
        );
        Ok(())
    }

    async fn token(&mut self, token: Vec<u8>, timeout: Duration) -> anyhow::Result<Bytes> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let answer: SaslAuthenticateResponse = self.call(ApiKey::SaslAuthenticate, 2, &request, timeout).await?;
        if answer.error_code != 0 {
            let message = answer.error_message.map(|m| m.to_string()).unwrap_or_default();
            return Err(AuthenticationRefused {
                code: answer.error_code,
                message,
            }
            .into());
        }
        Ok(answer.auth_bytes)
    }

    /// The request's frame, with the next correlation id.
    fn frame<Req: Encodable + HeaderVersion>(&mut self, api_key: ApiKey, version: i16, request: &Req) -> anyhow::Result<(i32, BytesMut)> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header.encode(&mut buf, Req::header_version(version))?;
        request.encode(&mut buf, version)?;
        let len = i32::try_from(buf.len() - 4)?;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        Ok((correlation_id, buf))
    }

    /// Writes a request without waiting for its answer (or one that gets
    /// none: Produce with acks=0), within `timeout`; returns its correlation
    /// id for `read_response`. Answers come in the order requests were
    /// written (Kafka's rule for one connection).
    pub async fn write_request<Req: Encodable + HeaderVersion>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> anyhow::Result<i32> {
        let (correlation_id, buf) = self.frame(api_key, version, request)?;
        let write = async {
            self.stream.write_all(&buf).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| anyhow::anyhow!("request timed out"))??;
        Ok(correlation_id)
    }

    /// Reads the answer to the request written with `correlation_id` (the
    /// oldest one not read yet), within `timeout`.
    pub async fn read_response<Resp: Decodable + HeaderVersion>(
        &mut self,
        version: i16,
        correlation_id: i32,
        timeout: Duration,
    ) -> anyhow::Result<Resp> {
        let read = async {
            let len = self.stream.read_i32().await?;
            if speaks_tls(len) {
                anyhow::bail!("the listener answered with TLS: connect with TLS");
            }
            if len < 0 || len as usize > self.max_response_bytes {
                anyhow::bail!("response of {len} bytes is over the {} byte bound", self.max_response_bytes);
            }
            let mut frame = vec![0u8; len as usize];
            self.stream.read_exact(&mut frame).await?;
            Ok::<_, anyhow::Error>(Bytes::from(frame))
        };
        let mut frame = tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| anyhow::anyhow!("request timed out"))??;
        let response_header = ResponseHeader::decode(&mut frame, Resp::header_version(version))?;
        if response_header.correlation_id != correlation_id {
            anyhow::bail!(
                "response correlation id {} for request {correlation_id}",
                response_header.correlation_id
            );
        }
        Resp::decode(&mut frame, version)
    }

    /// Sends one request and reads its response, within `timeout` each.
    pub async fn call<Req, Resp>(&mut self, api_key: ApiKey, version: i16, request: &Req, timeout: Duration) -> anyhow::Result<Resp>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let correlation_id = self.write_request(api_key, version, request, timeout).await?;
        self.read_response(version, correlation_id, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_record_is_told_from_a_length_prefix() {
        // A TLS 1.2 alert (0x15 0x03 0x03) and handshake, as sent to a
        // plain-text client.
        assert!(speaks_tls(i32::from_be_bytes([0x15, 0x03, 0x03, 0x00])));
        assert!(speaks_tls(i32::from_be_bytes([0x16, 0x03, 0x01, 0x02])));
        // Lengths a broker sends: small, or large but not a TLS record.
        assert!(!speaks_tls(352));
        assert!(!speaks_tls(0x0315_0303));
        assert!(!speaks_tls(i32::from_be_bytes([0x15, 0x04, 0x03, 0x00])));
    }
}
