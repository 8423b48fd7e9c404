//! A minimal Kafka client connection for broker-to-broker requests (the
//! followers' fetches), on the same codec as the server side. Responses are
//! read with a bound on their size.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Connection {
    stream: TcpStream,
    next_correlation_id: i32,
    client_id: StrBytes,
    max_response_bytes: usize,
}

impl Connection {
    pub async fn connect(address: &str, client_id: String, timeout: Duration, max_response_bytes: usize) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {address} timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            next_correlation_id: 0,
            client_id: StrBytes::from_string(client_id),
            max_response_bytes,
        })
    }

    /// Sends one request and reads its response, within `timeout`.
    pub async fn call<Req, Resp>(&mut self, api_key: ApiKey, version: i16, request: &Req, timeout: Duration) -> anyhow::Result<Resp>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
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
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        let exchange = async {
            self.stream.write_all(&buf).await?;
            let len = self.stream.read_i32().await?;
            if len < 0 || len as usize > self.max_response_bytes {
                anyhow::bail!("response of {len} bytes is over the {} byte bound", self.max_response_bytes);
            }
            let mut frame = vec![0u8; len as usize];
            self.stream.read_exact(&mut frame).await?;
            Ok::<_, anyhow::Error>(Bytes::from(frame))
        };
        let mut frame = tokio::time::timeout(timeout, exchange)
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
}
