//! Security with real clients: TLS, mutual TLS and certificate rotation;
//! SASL PLAIN and SCRAM (librdkafka through rdkafka, kafka-python, kcat);
//! SCRAM credentials and ACLs managed through Kafka's own APIs and in force
//! at once; and hostile authentication beside a well-behaved client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use sediment::security::scram::{client as scram_client, ScramAlgorithm};

use crate::bad_input::{encode_batch, request};
use crate::common::{metric, metric_sum, wait_until, Broker};
use crate::kafka::{config, produce, producer, record};

/// A test certificate authority (rcgen): issues server and client certificates.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

impl Ca {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "sediment test CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let ca = Self {
            issuer,
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(ca.path("ca.pem"), ca.issuer.pem()).unwrap();
        ca
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues a certificate for `cn` (a server for localhost and 127.0.0.1)
    /// and writes `<name>.pem` and `<name>.key`.
    fn issue(&self, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        self.issue_with(name, cn, |_| {})
    }

    /// An expired certificate for `cn`.
    fn issue_expired(&self, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        self.issue_with(name, cn, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    fn issue_with(&self, name: &str, cn: &str, adjust: impl FnOnce(&mut rcgen::CertificateParams)) -> (PathBuf, PathBuf) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        adjust(&mut params);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (self.path(&format!("{name}.pem")), self.path(&format!("{name}.key")));
        // The key first: a reloader that sees the new certificate with the
        // old key keeps the old pair and tries again.
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&cert_path, cert.pem()).unwrap();
        (cert_path, key_path)
    }

    fn client_config(&self, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_file(self.path("ca.pem")).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![rustls_pki_types::CertificateDer::from_pem_file(cert).unwrap()],
                    rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .unwrap(),
        })
    }
}

/// A raw Kafka connection (plain or TLS) for requests rdkafka does not send.
struct Raw {
    stream: Box<dyn ReadWrite>,
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl Raw {
    fn connect(address: &str) -> Self {
        let s = TcpStream::connect(address).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Self { stream: Box::new(s) }
    }

    /// A TLS connection; `Err` when the handshake fails.
    fn tls(address: &str, config: Arc<rustls::ClientConfig>) -> std::io::Result<Self> {
        let mut tcp = TcpStream::connect(address)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).map_err(std::io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        let mut raw = Self {
            stream: Box::new(rustls::StreamOwned::new(conn, tcp)),
        };
        // TLS 1.3 sends the server's verdict on a client certificate after
        // the handshake: one round trip makes it arrive.
        raw.try_call::<_, ApiVersionsResponse>(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())?;
        Ok(raw)
    }

    fn try_call<Req: Encodable, Resp: Decodable>(&mut self, key: ApiKey, version: i16, req: &Req) -> std::io::Result<Resp> {
        self.stream.write_all(&request(key, version, req))?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body)?;
        let mut body = Bytes::from(body);
        ResponseHeader::decode(&mut body, key.response_header_version(version)).map_err(std::io::Error::other)?;
        Resp::decode(&mut body, version).map_err(std::io::Error::other)
    }

    fn call<Req: Encodable, Resp: Decodable>(&mut self, key: ApiKey, version: i16, req: &Req) -> Resp {
        self.try_call(key, version, req).unwrap()
    }

    /// True once the broker has closed the connection (EOF or reset).
    fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }

    fn sasl_handshake(&mut self, mechanism: &str) -> SaslHandshakeResponse {
        self.call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
        )
    }

    fn sasl_token(&mut self, token: &[u8]) -> SaslAuthenticateResponse {
        self.call(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
        )
    }

    /// SASL PLAIN; the broker's error code (0 when authenticated).
    fn plain(&mut self, user: &str, password: &str) -> i16 {
        assert_eq!(self.sasl_handshake("PLAIN").error_code, 0);
        self.sasl_token(format!("\0{user}\0{password}").as_bytes()).error_code
    }

    /// SASL SCRAM; the broker's error code (0 when authenticated, and the
    /// server's signature checked).
    fn scram(&mut self, alg: ScramAlgorithm, user: &str, password: &str) -> i16 {
        assert_eq!(self.sasl_handshake(alg.mechanism().name()).error_code, 0);
        let first = scram_client::first(user, "clientnonce123");
        let server_first = self.sasl_token(first.as_bytes());
        if server_first.error_code != 0 {
            return server_first.error_code;
        }
        let server_first = String::from_utf8(server_first.auth_bytes.to_vec()).unwrap();
        let (last, expected) = scram_client::last(alg, password, &first, &server_first).unwrap();
        let done = self.sasl_token(last.as_bytes());
        if done.error_code == 0 {
            assert_eq!(done.auth_bytes.as_ref(), expected.as_bytes(), "the server's signature");
        }
        done.error_code
    }

    fn produce(&mut self, topic: &str) -> i16 {
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(encode_batch()))])]);
        let resp: ProduceResponse = self.call(ApiKey::Produce, 9, &req);
        resp.responses[0].partition_responses[0].error_code
    }

    fn metadata_topics(&mut self) -> Vec<String> {
        let resp: MetadataResponse = self.call(ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
        let mut names: Vec<String> = resp
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref())
            .map(|n| n.0.to_string())
            .collect();
        names.sort();
        names
    }

    fn create_topic(&mut self, name: &str) -> i16 {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.into())))
                .with_num_partitions(1)
                .with_replication_factor(1)]);
        let resp: CreateTopicsResponse = self.call(ApiKey::CreateTopics, 7, &req);
        resp.topics[0].error_code
    }

    fn set_scram(&mut self, alg: ScramAlgorithm, user: &str, password: &str) -> i16 {
        let salt = format!("salt-of-{user}").into_bytes();
        let salted = alg.salted_password(password.as_bytes(), &salt, 4096);
        let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(user.into()))
            .with_mechanism(alg.wire())
            .with_iterations(4096)
            .with_salt(Bytes::from(salt))
            .with_salted_password(Bytes::from(salted))]);
        let resp: AlterUserScramCredentialsResponse = self.call(ApiKey::AlterUserScramCredentials, 0, &req);
        resp.results[0].error_code
    }

    fn delete_scram(&mut self, alg: ScramAlgorithm, user: &str) -> i16 {
        let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![ScramCredentialDeletion::default()
            .with_name(StrBytes::from_string(user.into()))
            .with_mechanism(alg.wire())]);
        let resp: AlterUserScramCredentialsResponse = self.call(ApiKey::AlterUserScramCredentials, 0, &req);
        resp.results[0].error_code
    }

    /// Creates one ACL (resource type, name, pattern, principal, operation,
    /// permission in Kafka's wire numbers); the broker's error code.
    fn acl(&mut self, kind: i8, name: &str, pattern: i8, principal: &str, operation: i8, permission: i8) -> i16 {
        let req = CreateAclsRequest::default().with_creations(vec![AclCreation::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_string(name.into()))
            .with_resource_pattern_type(pattern)
            .with_principal(StrBytes::from_string(principal.into()))
            .with_host(StrBytes::from_static_str("*"))
            .with_operation(operation)
            .with_permission_type(permission)]);
        let resp: CreateAclsResponse = self.call(ApiKey::CreateAcls, 3, &req);
        resp.results[0].error_code
    }

    fn delete_acls_of(&mut self, principal: &str, permission: i8) -> usize {
        let req = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
            .with_resource_type_filter(1)
            .with_resource_name_filter(None)
            .with_host_filter(None)
            .with_pattern_type_filter(1)
            .with_principal_filter(Some(StrBytes::from_string(principal.into())))
            .with_operation(1)
            .with_permission_type(permission)]);
        let resp: DeleteAclsResponse = self.call(ApiKey::DeleteAcls, 3, &req);
        assert_eq!(resp.filter_results[0].error_code, 0);
        resp.filter_results[0].matching_acls.len()
    }
}

// Kafka's wire numbers, for readability below.
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const READ: i8 = 3;
const WRITE: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

fn users_file(dir: &Path) -> PathBuf {
    let path = dir.join("users.toml");
    std::fs::write(&path, "[users]\nadmin = \"admin-secret\"\n").unwrap();
    path
}

/// A broker with one SASL_PLAINTEXT listener (PLAIN and SCRAM), the
/// authorizer on, and `admin` as the super user.
fn sasl_broker(users: &Path) -> Broker {
    Broker::start(&format!(
        r#"
[[listener]]
name = "SASL"
listen = "127.0.0.1:0"
protocol = "SASL_PLAINTEXT"
sasl_mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

[auth]
authorizer = true
super_users = ["User:admin"]
plain_users_file = "{}"
"#,
        users.display()
    ))
}

fn sasl(mechanism: &str, user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("security.protocol", "SASL_PLAINTEXT".into()),
        ("sasl.mechanism", mechanism.into()),
        ("sasl.username", user.into()),
        ("sasl.password", password.into()),
    ]
}

fn as_pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Subscribes as a member of `group` and reads `expected` records of `topic`.
fn consume_in_group(bootstrap: &str, topic: &str, group: &str, expected: usize, extra: &[(&str, &str)]) -> usize {
    let mut c = config(bootstrap);
    c.set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let consumer: BaseConsumer = c.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while got < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                assert!(m.payload().is_some());
                got += 1;
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    got
}

/// Whether librdkafka with these settings gets Metadata within 10 s.
fn rdkafka_connects(bootstrap: &str, extra: &[(&str, &str)]) -> bool {
    let mut c = config(bootstrap);
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let consumer: BaseConsumer = c.create().unwrap();
    consumer.fetch_metadata(None, Duration::from_secs(10)).is_ok()
}

/// SASL PLAIN and SCRAM with librdkafka; SCRAM credentials through
/// AlterUserScramCredentials (at once, across a restart, and gone once
/// deleted); the ACL matrix of a principal with only READ on a prefix and
/// a group; ACL changes in force on open connections; deny wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_credentials_and_acls_with_real_clients() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path());
    let mut broker = sasl_broker(&users);
    let bootstrap = broker.bootstrap();

    let mut admin = Raw::connect(&bootstrap);
    assert_eq!(admin.plain("admin", "admin-secret"), 0);
    assert_eq!(admin.set_scram(ScramAlgorithm::Sha256, "alice", "alice-pw"), 0);
    assert_eq!(admin.set_scram(ScramAlgorithm::Sha512, "bob", "bob-pw"), 0);
    let described: DescribeUserScramCredentialsResponse = admin.call(
        ApiKey::DescribeUserScramCredentials,
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(None),
    );
    let users: Vec<String> = described.results.iter().map(|r| r.user.to_string()).collect();
    assert_eq!(users, ["alice", "bob"]);
    assert_eq!(described.results[1].credential_infos[0].iterations, 4096);
    for topic in ["app-orders", "other"] {
        assert_eq!(admin.create_topic(topic), 0);
    }
    // bob may only READ app-* and use group g-bob.
    assert_eq!(admin.acl(TOPIC, "app-", PREFIXED, "User:bob", READ, ALLOW), 0);
    assert_eq!(admin.acl(GROUP, "g-bob", LITERAL, "User:bob", READ, ALLOW), 0);
    // alice may write and read every topic.
    assert_eq!(admin.acl(TOPIC, "*", LITERAL, "User:alice", 2, ALLOW), 0);

    // librdkafka, each mechanism: admin (PLAIN) and alice (SCRAM-SHA-256) produce.
    let admin_sasl = sasl("PLAIN", "admin", "admin-secret");
    let records: Vec<_> = (0..10).map(|i| record(i, 50)).collect();
    produce(&producer(&bootstrap, &as_pairs(&admin_sasl)), "other", &records).await;
    let alice = sasl("SCRAM-SHA-256", "alice", "alice-pw");
    // alice's idempotent producer needs IDEMPOTENT_WRITE or WRITE on a topic: she has ALL.
    produce(&producer(&bootstrap, &as_pairs(&alice)), "app-orders", &records).await;
    // bob (SCRAM-SHA-512) consumes in his group.
    let bob = sasl("SCRAM-SHA-512", "bob", "bob-pw");
    assert_eq!(consume_in_group(&bootstrap, "app-orders", "g-bob", 10, &as_pairs(&bob)), 10);
    // Wrong passwords and unknown users do not get in.
    assert!(!rdkafka_connects(&bootstrap, &as_pairs(&sasl("SCRAM-SHA-256", "alice", "wrong"))));
    assert!(!rdkafka_connects(&bootstrap, &as_pairs(&sasl("SCRAM-SHA-512", "mallory", "x"))));
    assert!(!rdkafka_connects(&bootstrap, &as_pairs(&sasl("PLAIN", "admin", "nope"))));
    assert!(metric_sum(&broker, "sediment_authentication_failures_total") >= 3.0);

    // The matrix, on one connection as bob.
    let mut bob_raw = Raw::connect(&bootstrap);
    assert_eq!(bob_raw.scram(ScramAlgorithm::Sha512, "bob", "bob-pw"), 0);
    assert_eq!(bob_raw.produce("app-orders"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(
        bob_raw.metadata_topics(),
        ["app-orders"],
        "Metadata lists only what bob may describe"
    );
    assert_eq!(bob_raw.create_topic("app-new"), TOPIC_AUTHORIZATION_FAILED);
    // Changes apply to the open connection.
    assert_eq!(admin.acl(TOPIC, "app-", PREFIXED, "User:bob", WRITE, ALLOW), 0);
    assert_eq!(bob_raw.produce("app-orders"), 0);
    // Deny wins over allow.
    assert_eq!(admin.acl(TOPIC, "app-orders", LITERAL, "User:bob", WRITE, DENY), 0);
    assert_eq!(bob_raw.produce("app-orders"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(admin.delete_acls_of("User:bob", DENY), 1);
    assert_eq!(bob_raw.produce("app-orders"), 0);
    assert!(metric_sum(&broker, "sediment_authorization_denials_total") >= 3.0);

    // Credentials and ACLs survive a restart.
    drop((admin, bob_raw));
    broker.restart();
    let mut bob_raw = Raw::connect(&bootstrap);
    assert_eq!(bob_raw.scram(ScramAlgorithm::Sha512, "bob", "bob-pw"), 0);
    assert_eq!(bob_raw.produce("app-orders"), 0);
    // A deleted credential stops working.
    let mut admin = Raw::connect(&bootstrap);
    assert_eq!(admin.plain("admin", "admin-secret"), 0);
    assert_eq!(admin.delete_scram(ScramAlgorithm::Sha512, "bob"), 0);
    let mut again = Raw::connect(&bootstrap);
    assert_eq!(again.scram(ScramAlgorithm::Sha512, "bob", "bob-pw"), SASL_AUTHENTICATION_FAILED);
    let log = broker.log();
    for secret in ["admin-secret", "bob-pw", "alice-pw"] {
        assert!(!log.contains(secret), "a password in the log");
    }
}

/// TLS (librdkafka), mutual TLS (the certificate's subject is the principal
/// the ACLs see), SASL_SSL with SCRAM (kafka-python and kcat), and a
/// certificate replaced on disk served without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mutual_tls_sasl_ssl_and_certificate_rotation() {
    let ca = Ca::new();
    let (cert, key) = ca.issue("server", "localhost");
    let (client1, client1_key) = ca.issue("client1", "client-1");
    let (client2, client2_key) = ca.issue("client2", "client-2");
    let (admin_cert, admin_key) = ca.issue("admin", "admin-client");
    let (mtls_port, sasl_ssl_port) = (crate::common::free_port(), crate::common::free_port());
    let broker = Broker::start(&format!(
        r#"
[[listener]]
name = "SSL"
listen = "127.0.0.1:0"
protocol = "SSL"
tls_cert = "{cert}"
tls_key = "{key}"

[[listener]]
name = "MTLS"
listen = "127.0.0.1:{mtls_port}"
protocol = "SSL"
tls_cert = "{cert}"
tls_key = "{key}"
tls_client_ca = "{ca}"

[[listener]]
name = "SASL_SSL"
listen = "127.0.0.1:{sasl_ssl_port}"
protocol = "SASL_SSL"
tls_cert = "{cert}"
tls_key = "{key}"
sasl_mechanisms = ["SCRAM-SHA-512"]

[auth]
authorizer = true
allow_everyone_if_no_acl_found = true
super_users = ["User:CN=admin-client"]
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca.path("ca.pem").display(),
    ));
    let ssl_bootstrap = broker.bootstrap();
    let mtls = format!("127.0.0.1:{mtls_port}");
    let sasl_ssl = format!("127.0.0.1:{sasl_ssl_port}");
    let ca_path = ca.path("ca.pem").display().to_string();

    // librdkafka over SSL: no ACL names "open", so everyone may use it.
    let ssl = [("security.protocol", "SSL"), ("ssl.ca.location", ca_path.as_str())];
    let records: Vec<_> = (0..20).map(|i| record(i, 100)).collect();
    produce(&producer(&ssl_bootstrap, &ssl), "open", &records).await;
    assert_eq!(consume_in_group(&ssl_bootstrap, "open", "g-ssl", 20, &ssl), 20);

    // Mutual TLS: no certificate, no connection.
    assert!(
        Raw::tls(&mtls, ca.client_config(None)).is_err(),
        "a client without a certificate is refused"
    );
    // A certificate from another CA, or an expired one, is refused too.
    let stranger = Ca::new();
    let (strange, strange_key) = stranger.issue("stranger", "client-1");
    assert!(
        Raw::tls(&mtls, ca.client_config(Some((&strange, &strange_key)))).is_err(),
        "another CA's certificate"
    );
    let (expired, expired_key) = ca.issue_expired("expired", "client-1");
    assert!(
        Raw::tls(&mtls, ca.client_config(Some((&expired, &expired_key)))).is_err(),
        "an expired certificate"
    );
    let mut admin = Raw::tls(&mtls, ca.client_config(Some((&admin_cert, &admin_key)))).unwrap();
    assert_eq!(admin.create_topic("guarded"), 0);
    assert_eq!(admin.acl(TOPIC, "guarded", LITERAL, "User:CN=client-1", 2, ALLOW), 0);
    let mut one = Raw::tls(&mtls, ca.client_config(Some((&client1, &client1_key)))).unwrap();
    assert_eq!(one.produce("guarded"), 0, "client-1's subject is allowed");
    let mut two = Raw::tls(&mtls, ca.client_config(Some((&client2, &client2_key)))).unwrap();
    assert_eq!(two.produce("guarded"), TOPIC_AUTHORIZATION_FAILED, "client-2's subject is not");
    let (c1, k1) = (client1.display().to_string(), client1_key.display().to_string());
    let mtls_conf = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", ca_path.as_str()),
        ("ssl.certificate.location", c1.as_str()),
        ("ssl.key.location", k1.as_str()),
    ];
    produce(&producer(&mtls, &mtls_conf), "guarded", &records).await;

    // SASL_SSL with SCRAM-SHA-512: kafka-python and kcat.
    assert_eq!(admin.set_scram(ScramAlgorithm::Sha512, "carol", "carol-pw"), 0);
    let out = crate::common::run_python(
        "kafka_python_secure.py",
        &[
            &sasl_ssl,
            "SASL_SSL",
            "SCRAM-SHA-512",
            "carol",
            "carol-pw",
            &ca_path,
            "py-secure",
            "50",
        ],
    );
    assert!(out.contains("ok 50"), "{out}");
    let kcat = |args: &[&str], input: Option<&str>| {
        let mut cmd = std::process::Command::new("kcat");
        cmd.args([
            "-b",
            &sasl_ssl,
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-512",
        ])
        .args(["-X", "sasl.username=carol", "-X", "sasl.password=carol-pw", "-X"])
        .arg(format!("ssl.ca.location={ca_path}"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = input {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kcat: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    kcat(&["-P", "-t", "kcat-secure"], Some("one\ntwo\nthree\n"));
    let consumed = kcat(&["-C", "-t", "kcat-secure", "-e", "-q"], None);
    assert_eq!(consumed.lines().collect::<Vec<_>>(), ["one", "two", "three"]);

    // Rotation: new files, new certificate served, no restart.
    let served_serial = || {
        let mut tcp = TcpStream::connect(&ssl_bootstrap).unwrap();
        let mut conn = rustls::ClientConnection::new(ca.client_config(None), "localhost".try_into().unwrap()).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
        conn.peer_certificates().unwrap()[0].to_vec()
    };
    let before = served_serial();
    ca.issue("server", "localhost");
    wait_until("the rotated certificate is served", 15, || served_serial() != before);
    assert!(metric(&broker, "sediment_tls_certificate_reloads_total") >= 1.0);
    // Clients still connect (the new certificate is signed by the same CA).
    produce(&producer(&ssl_bootstrap, &ssl), "open", &records[..1]).await;
}

/// Hostile authentication: requests before authenticating, tokens out of
/// order, an oversized token, wrong passwords (answered slower and slower),
/// garbage instead of a TLS handshake. Each gets an error or a closed
/// connection, a metric, and nothing leaks into the log; a well-behaved
/// client is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_authentication_is_refused_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path());
    let ca = Ca::new();
    let (cert, key) = ca.issue("server", "localhost");
    let tls_port = crate::common::free_port();
    let broker = Broker::start(&format!(
        r#"
[[listener]]
name = "SASL"
listen = "127.0.0.1:0"
protocol = "SASL_PLAINTEXT"
sasl_mechanisms = ["PLAIN", "SCRAM-SHA-256"]

[[listener]]
name = "TLS"
listen = "127.0.0.1:{tls_port}"
protocol = "SSL"
tls_cert = "{}"
tls_key = "{}"

[auth]
plain_users_file = "{}"
"#,
        cert.display(),
        key.display(),
        users.display()
    ));
    let bootstrap = broker.bootstrap();
    let mut good = Raw::connect(&bootstrap);
    assert_eq!(good.plain("admin", "admin-secret"), 0);
    assert_eq!(good.create_topic("t"), 0);
    let mut served = || assert_eq!(good.produce("t"), 0, "the well-behaved client is served");

    // A request before authenticating closes the connection.
    let mut early = Raw::connect(&bootstrap);
    early
        .stream
        .write_all(&request(ApiKey::Metadata, 12, &MetadataRequest::default()))
        .unwrap();
    assert!(early.is_closed());
    // A token before the handshake: likewise.
    let mut out_of_order = Raw::connect(&bootstrap);
    out_of_order
        .stream
        .write_all(&request(ApiKey::SaslAuthenticate, 2, &SaslAuthenticateRequest::default()))
        .unwrap();
    assert!(out_of_order.is_closed());
    served();
    // An unknown mechanism is refused with the list, then the connection closes.
    let mut unknown = Raw::connect(&bootstrap);
    let refused = unknown.sasl_handshake("GSSAPI");
    assert_eq!(refused.error_code, 33);
    assert!(refused.mechanisms.iter().any(|m| m.as_str() == "PLAIN"));
    assert!(unknown.is_closed());
    // An oversized token (over sasl_max_receive_bytes) is not read.
    let mut big = Raw::connect(&bootstrap);
    assert_eq!(big.sasl_handshake("PLAIN").error_code, 0);
    let mut huge = (2_000_000i32).to_be_bytes().to_vec();
    huge.extend_from_slice(&[0u8; 64]);
    big.stream.write_all(&huge).unwrap();
    assert!(big.is_closed());
    assert!(metric_sum(&broker, "sediment_protocol_errors_total") >= 3.0);
    served();
    // Wrong passwords: refused, closed, and each failure in a row waits longer.
    let mut took = Vec::new();
    for _ in 0..3 {
        let mut guess = Raw::connect(&bootstrap);
        let started = Instant::now();
        assert_eq!(guess.plain("admin", "guess"), SASL_AUTHENTICATION_FAILED);
        took.push(started.elapsed());
        assert!(guess.is_closed());
        served();
    }
    assert!(
        took[2] >= Duration::from_millis(400),
        "the third failure in a row waits 400 ms: {took:?}"
    );
    let mut scram = Raw::connect(&bootstrap);
    assert_eq!(scram.scram(ScramAlgorithm::Sha256, "nobody", "x"), SASL_AUTHENTICATION_FAILED);
    // A malformed SCRAM message.
    let mut bad = Raw::connect(&bootstrap);
    assert_eq!(bad.sasl_handshake("SCRAM-SHA-256").error_code, 0);
    assert_eq!(bad.sasl_token(b"\xff garbage").error_code, SASL_AUTHENTICATION_FAILED);
    // Garbage instead of a TLS handshake.
    for garbage in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0]] {
        let mut tcp = TcpStream::connect(format!("127.0.0.1:{tls_port}")).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(garbage).unwrap();
        let _ = tcp.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest);
    }
    wait_until("TLS failures are counted", 10, || {
        crate::common::http_get(&broker.http("/metrics"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("sediment_authentication_failures_total{") && l.contains("mechanism=\"TLS\""))
    });
    served();
    assert!(metric_sum(&broker, "sediment_authentication_failures_total") >= 5.0);
    assert!(!broker.log().contains("admin-secret"));
}

/// A cluster whose brokers replicate over a SASL_SSL inter-broker listener
/// (PLAIN as a super user, the leaders' certificates checked against the
/// CA), with an authorizer that keeps anonymous clients from posing as
/// followers: acks=all needs the followers, so every acknowledged record
/// went through the secured listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_replicates_over_sasl_ssl_and_refuses_anonymous_followers() {
    let ca = Ca::new();
    let (cert, key) = ca.issue("server", "localhost");
    let users = ca.path("users.toml");
    std::fs::write(&users, "[users]\nbroker = \"broker-pw\"\n").unwrap();
    let password = ca.path("broker-password");
    std::fs::write(&password, "broker-pw\n").unwrap();
    let etcd = crate::etcd::Etcd::start();
    let internal_ports: Vec<u16> = (0..3).map(|_| crate::common::free_port()).collect();
    let brokers: Vec<Broker> = (1..=3)
        .map(|id| {
            let internal = internal_ports[id as usize - 1];
            Broker::start(&format!(
                r#"
etcd = "{etcd}"
broker_id = {id}
cluster = "secure"
etcd_lease_ttl_ms = 3000
replica_lag_time_max_ms = 3000
inter_broker_listener = "INTERNAL"

[[listener]]
name = "CLIENT"
listen = "127.0.0.1:0"

[[listener]]
name = "INTERNAL"
listen = "127.0.0.1:{internal}"
advertise = "localhost:{internal}"
protocol = "SASL_SSL"
tls_cert = "{cert}"
tls_key = "{key}"
sasl_mechanisms = ["PLAIN", "SCRAM-SHA-256"]

[auth]
authorizer = true
allow_everyone_if_no_acl_found = true
super_users = ["User:broker"]
plain_users_file = "{users}"
inter_broker_tls_ca = "{ca}"
inter_broker_sasl_mechanism = "PLAIN"
inter_broker_user = "broker"
inter_broker_password_file = "{password}"
"#,
                etcd = etcd.endpoint(),
                cert = cert.display(),
                key = key.display(),
                users = users.display(),
                ca = ca.path("ca.pem").display(),
                password = password.display(),
            ))
        })
        .collect();
    let bootstrap = brokers.iter().map(|b| b.bootstrap()).collect::<Vec<_>>().join(",");
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = config(&bootstrap).create().unwrap();
    let topic = rdkafka::admin::NewTopic::new("replicated", 3, rdkafka::admin::TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    for r in admin.create_topics(&[topic], &rdkafka::admin::AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
    // From now on the cluster resource has an ACL: anonymous may not act as a follower.
    let mut anonymous = Raw::connect(&brokers[0].bootstrap());
    assert_eq!(anonymous.acl(4, "kafka-cluster", LITERAL, "User:ANONYMOUS", 9, DENY), 0);

    let records: Vec<_> = (0..200).map(|i| record(i, 100)).collect();
    let placed = produce(&producer(&bootstrap, &[]), "replicated", &records).await;
    assert_eq!(placed.len(), 200);
    let full_isrs = || {
        let consumer: BaseConsumer = config(&bootstrap).create().unwrap();
        let metadata = consumer.fetch_metadata(Some("replicated"), Duration::from_secs(5)).unwrap();
        metadata.topics()[0].partitions().iter().all(|p| p.isr().len() == 3)
    };
    wait_until("every follower in sync over SASL_SSL", 30, full_isrs);
    let internal_logins: f64 = brokers
        .iter()
        .flat_map(|b| {
            let text = crate::common::http_get(&b.http("/metrics")).unwrap_or_default();
            text.lines()
                .filter(|l| l.starts_with("sediment_authentications_total{") && l.contains("listener=\"INTERNAL\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .sum();
    assert!(internal_logins >= 2.0, "followers authenticated on INTERNAL: {internal_logins}");

    // A credential created at broker 1 works at broker 3, and an ACL created
    // at broker 1 is enforced at broker 2, through etcd's watch.
    assert_eq!(
        anonymous.set_scram(ScramAlgorithm::Sha256, "dave", "dave-pw"),
        31,
        "anonymous may no longer alter the cluster"
    );
    let internal = |i: usize| format!("127.0.0.1:{}", internal_ports[i]);
    let mut admin = Raw::tls(&internal(0), ca.client_config(None)).unwrap();
    assert_eq!(admin.plain("broker", "broker-pw"), 0);
    // Broker 2 may not lead partition 0 (NOT_LEADER_OR_FOLLOWER), but it
    // authorizes before it looks.
    let mut at_two = Raw::connect(&brokers[1].bootstrap());
    assert_ne!(at_two.produce("replicated"), TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(admin.set_scram(ScramAlgorithm::Sha256, "dave", "dave-pw"), 0);
    assert_eq!(admin.acl(TOPIC, "replicated", LITERAL, "User:ANONYMOUS", WRITE, DENY), 0);
    let changed = Instant::now();
    wait_until("the ACL is enforced at broker 2", 5, || {
        at_two.produce("replicated") == TOPIC_AUTHORIZATION_FAILED
    });
    eprintln!("ACL made at broker 1 enforced at broker 2 after {:?}", changed.elapsed());
    wait_until("the credential works at broker 3", 5, || {
        let mut dave = Raw::tls(&internal(2), ca.client_config(None)).unwrap();
        dave.scram(ScramAlgorithm::Sha256, "dave", "dave-pw") == 0
    });

    // An anonymous client posing as follower 2 is refused.
    let fetch = crate::bad_input::fetch_request("replicated", 0, 0, 1 << 20).with_replica_id(BrokerId(2));
    let refused: FetchResponse = anonymous.call(ApiKey::Fetch, 12, &fetch);
    assert_eq!(refused.error_code, 31, "CLUSTER_AUTHORIZATION_FAILED");
}

/// Every client over every protocol: librdkafka (rdkafka), kafka-python and
/// kcat, each over SSL, SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256,
/// SCRAM-SHA-512) and SASL_SSL, produce and read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_speaks_every_protocol() {
    let ca = Ca::new();
    let (cert, key) = ca.issue("server", "localhost");
    let users = users_file(ca.dir.path());
    let (sasl_port, sasl_ssl_port) = (crate::common::free_port(), crate::common::free_port());
    let broker = Broker::start(&format!(
        r#"
[[listener]]
name = "SSL"
listen = "127.0.0.1:0"
protocol = "SSL"
tls_cert = "{cert}"
tls_key = "{key}"

[[listener]]
name = "SASL_PLAINTEXT"
listen = "127.0.0.1:{sasl_port}"
protocol = "SASL_PLAINTEXT"
sasl_mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

[[listener]]
name = "SASL_SSL"
listen = "127.0.0.1:{sasl_ssl_port}"
protocol = "SASL_SSL"
tls_cert = "{cert}"
tls_key = "{key}"
sasl_mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

[auth]
plain_users_file = "{users}"
"#,
        cert = cert.display(),
        key = key.display(),
        users = users.display(),
    ));
    let mut admin = Raw::connect(&format!("127.0.0.1:{sasl_port}"));
    assert_eq!(admin.plain("admin", "admin-secret"), 0);
    assert_eq!(admin.set_scram(ScramAlgorithm::Sha256, "erin", "erin-pw"), 0);
    assert_eq!(admin.set_scram(ScramAlgorithm::Sha512, "erin", "erin-pw"), 0);
    let ca_path = ca.path("ca.pem").display().to_string();
    let ssl = broker.bootstrap();
    let sasl = format!("127.0.0.1:{sasl_port}");
    let sasl_ssl = format!("127.0.0.1:{sasl_ssl_port}");
    // (address, protocol, mechanism, user, password)
    let cases = [
        (ssl.as_str(), "SSL", "", "", ""),
        (sasl.as_str(), "SASL_PLAINTEXT", "PLAIN", "admin", "admin-secret"),
        (sasl.as_str(), "SASL_PLAINTEXT", "SCRAM-SHA-256", "erin", "erin-pw"),
        (sasl.as_str(), "SASL_PLAINTEXT", "SCRAM-SHA-512", "erin", "erin-pw"),
        (sasl_ssl.as_str(), "SASL_SSL", "PLAIN", "admin", "admin-secret"),
        (sasl_ssl.as_str(), "SASL_SSL", "SCRAM-SHA-256", "erin", "erin-pw"),
        (sasl_ssl.as_str(), "SASL_SSL", "SCRAM-SHA-512", "erin", "erin-pw"),
    ];
    for (i, (address, protocol, mechanism, user, password)) in cases.into_iter().enumerate() {
        let mut settings = vec![("security.protocol", protocol.to_string())];
        if protocol.ends_with("SSL") {
            settings.push(("ssl.ca.location", ca_path.clone()));
        }
        if protocol.starts_with("SASL") {
            settings.extend([
                ("sasl.mechanism", mechanism.to_string()),
                ("sasl.username", user.to_string()),
                ("sasl.password", password.to_string()),
            ]);
        }
        // librdkafka
        let topic = format!("rdkafka-{i}");
        let records: Vec<_> = (0..20).map(|r| record(r, 30)).collect();
        produce(&producer(address, &as_pairs(&settings)), &topic, &records).await;
        let got = tokio::task::block_in_place(|| crate::kafka::consume_all(address, &topic, 1, 20, &as_pairs(&settings)));
        assert_eq!(got.values().map(Vec::len).sum::<usize>(), 20, "rdkafka over {protocol} {mechanism}");
        // kafka-python
        let out = crate::common::run_python(
            "kafka_python_secure.py",
            &[address, protocol, mechanism, user, password, &ca_path, &format!("python-{i}"), "10"],
        );
        assert!(out.contains("ok 10"), "kafka-python over {protocol} {mechanism}: {out}");
        // kcat
        let mut kcat_args: Vec<String> = vec!["-b".into(), address.into()];
        for (k, v) in &settings {
            let k = if *k == "sasl.mechanism" { "sasl.mechanisms" } else { k };
            kcat_args.extend(["-X".to_string(), format!("{k}={v}")]);
        }
        let topic = format!("kcat-{i}");
        let mut produce_kcat = std::process::Command::new("kcat")
            .args(&kcat_args)
            .args(["-P", "-t", &topic])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        produce_kcat.stdin.take().unwrap().write_all(b"a\nb\n").unwrap();
        let produced = produce_kcat.wait_with_output().unwrap();
        assert!(
            produced.status.success(),
            "kcat -P over {protocol} {mechanism}: {}",
            String::from_utf8_lossy(&produced.stderr)
        );
        let consumed = std::process::Command::new("kcat")
            .args(&kcat_args)
            .args(["-C", "-t", &topic, "-e", "-q"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&consumed.stdout),
            "a\nb\n",
            "kcat -C over {protocol} {mechanism}"
        );
    }
}

/// The admin port over HTTPS with a bearer token: probes stay open,
/// /metrics and /v1 need the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_serves_https_and_guards_metrics_with_a_token() {
    let ca = Ca::new();
    let (cert, key) = ca.issue("server", "localhost");
    let token_file = ca.path("token");
    std::fs::write(&token_file, "s3cret-token-0123456789\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = http.local_addr().unwrap().port();
    let config = sediment::config::Config {
        data_dir: dir.path().join("data"),
        listen: listener.local_addr().unwrap(),
        http_listen: http.local_addr().unwrap(),
        http_tls_cert: Some(cert),
        http_tls_key: Some(key),
        http_token_file: Some(token_file),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let broker = tokio::spawn(sediment::node::run_on(config, vec![listener], http, async move {
        let _ = stopped.await;
    }));
    let ca_path = ca.path("ca.pem");
    let curl = |path: &str, token: Option<&str>| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca_path)
            .arg(format!("https://localhost:{http_port}{path}"));
        if let Some(token) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    tokio::task::block_in_place(|| {
        wait_until("HTTPS /readyz", 30, || curl("/readyz", None) == "200");
        assert_eq!(curl("/healthz", None), "200");
        assert_eq!(curl("/metrics", None), "401");
        assert_eq!(curl("/metrics", Some("wrong-token-0123456789")), "401");
        assert_eq!(curl("/metrics", Some("s3cret-token-0123456789")), "200");
        assert_eq!(curl("/v1/topics", None), "401");
        assert_eq!(curl("/v1/topics", Some("s3cret-token-0123456789")), "200");
        // Plain HTTP on the HTTPS port gets nowhere.
        assert!(crate::common::http_get(&format!("http://127.0.0.1:{http_port}/healthz")).map_or(true, |b| !b.starts_with("ok")));
    });
    stop.send(()).unwrap();
    broker.await.unwrap().unwrap();
}

/// KIP-368: with `connections_max_reauth_ms`, SaslAuthenticate tells the
/// client its session's lifetime; a connection that re-authenticates in
/// time goes on, one that does not is closed at its next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_unless_the_client_reauthenticates() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path());
    let broker = Broker::start(&format!(
        r#"
[[listener]]
name = "SASL"
listen = "127.0.0.1:0"
protocol = "SASL_PLAINTEXT"
sasl_mechanisms = ["PLAIN"]

[auth]
plain_users_file = "{}"
connections_max_reauth_ms = 1500
"#,
        users.display()
    ));
    let login = |raw: &mut Raw| {
        assert_eq!(raw.sasl_handshake("PLAIN").error_code, 0);
        raw.sasl_token(b"\0admin\0admin-secret")
    };
    let mut renewing = Raw::connect(&broker.bootstrap());
    let mut lapsing = Raw::connect(&broker.bootstrap());
    assert_eq!(login(&mut renewing).session_lifetime_ms, 1500);
    assert_eq!(login(&mut lapsing).session_lifetime_ms, 1500);
    assert_eq!(renewing.create_topic("reauth"), 0);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(login(&mut renewing).error_code, 0, "re-authentication before the end");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(renewing.produce("reauth"), 0, "the renewed session goes on");
    lapsing
        .stream
        .write_all(&request(ApiKey::Metadata, 12, &MetadataRequest::default()))
        .unwrap();
    assert!(lapsing.is_closed(), "the lapsed session is closed at its next request");
    // librdkafka keeps producing across the ends of its sessions, with no
    // error surfaced (it re-authenticates, or reconnects when a session ended).
    let settings = sasl("PLAIN", "admin", "admin-secret");
    let producer = producer(&broker.bootstrap(), &as_pairs(&settings));
    for round in 0..4 {
        let records: Vec<_> = (0..10).map(|i| record(round * 10 + i, 20)).collect();
        produce(&producer, "reauth", &records).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
}

/// KIP-848 and ACLs (Kafka 4.0's rules): a regex subscription matches only
/// topics the member may DESCRIBE, a topic named without DESCRIBE is
/// refused, and a group is not described to one who may not see its topics.
#[test]
fn consumer_group_heartbeats_assign_only_topics_the_member_may_describe() {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(dir.path());
    let broker = sasl_broker(&users);
    let bootstrap = broker.bootstrap();
    let mut admin = Raw::connect(&bootstrap);
    assert_eq!(admin.plain("admin", "admin-secret"), 0);
    assert_eq!(admin.set_scram(ScramAlgorithm::Sha512, "bob", "bob-pw"), 0);
    for topic in ["app-a", "app-b", "hidden"] {
        assert_eq!(admin.create_topic(topic), 0);
    }
    assert_eq!(admin.acl(TOPIC, "app-", PREFIXED, "User:bob", READ, ALLOW), 0);
    assert_eq!(admin.acl(GROUP, "g-848", LITERAL, "User:bob", READ, ALLOW), 0);
    let mut bob = Raw::connect(&bootstrap);
    assert_eq!(bob.scram(ScramAlgorithm::Sha512, "bob", "bob-pw"), 0);
    let s = |v: &str| StrBytes::from_string(v.into());
    let join = |member: &str| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g-848")))
            .with_member_id(s(member))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(5000)
            .with_topic_partitions(Some(vec![]))
    };
    let by_regex: ConsumerGroupHeartbeatResponse = bob.call(
        ApiKey::ConsumerGroupHeartbeat,
        1,
        &join("m1").with_subscribed_topic_regex(Some(s(".*"))),
    );
    assert_eq!(by_regex.error_code, 0, "{:?}", by_regex.error_message);
    let assigned = by_regex.assignment.unwrap().topic_partitions;
    assert_eq!(assigned.len(), 2, "bob's regex matched a topic he may not describe");
    let by_name: ConsumerGroupHeartbeatResponse = bob.call(
        ApiKey::ConsumerGroupHeartbeat,
        1,
        &join("m2").with_subscribed_topic_names(Some(vec![TopicName(s("hidden"))])),
    );
    assert_eq!(by_name.error_code, TOPIC_AUTHORIZATION_FAILED);
    // The admin's member subscribes to `hidden`: bob may no longer see
    // the group's assignments.
    let admin_join: ConsumerGroupHeartbeatResponse = admin.call(
        ApiKey::ConsumerGroupHeartbeat,
        1,
        &join("m3").with_subscribed_topic_names(Some(vec![TopicName(s("hidden"))])),
    );
    assert_eq!(admin_join.error_code, 0);
    let describe = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("g-848"))]);
    let seen_by_bob: ConsumerGroupDescribeResponse = bob.call(ApiKey::ConsumerGroupDescribe, 1, &describe);
    assert_eq!(seen_by_bob.groups[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    let seen_by_admin: ConsumerGroupDescribeResponse = admin.call(ApiKey::ConsumerGroupDescribe, 1, &describe);
    assert_eq!((seen_by_admin.groups[0].error_code, seen_by_admin.groups[0].members.len()), (0, 2));
}

/// The command line reaches a secured broker: SASL PLAIN over TLS, and
/// mutual TLS with a certificate as its identity. A wrong password, a
/// missing TLS and bad flags each end in one line and a meaningful exit
/// code.
#[test]
fn the_command_line_speaks_tls_mutual_tls_and_sasl() {
    use crate::cli::sediment;

    let ca = Ca::new();
    let (cert, key) = ca.issue("server", "localhost");
    let (admin_cert, admin_key) = ca.issue("admin", "admin-client");
    let (user_cert, user_key) = ca.issue("user", "nobody-special");
    let users = users_file(ca.dir.path());
    let password = ca.path("password");
    std::fs::write(&password, "admin-secret\n").unwrap();
    let wrong = ca.path("wrong");
    std::fs::write(&wrong, "guess").unwrap();
    let mtls_port = crate::common::free_port();
    let broker = Broker::start(&format!(
        r#"
[[listener]]
name = "SASL_SSL"
listen = "127.0.0.1:0"
protocol = "SASL_SSL"
tls_cert = "{cert}"
tls_key = "{key}"
sasl_mechanisms = ["PLAIN"]

[[listener]]
name = "MTLS"
listen = "127.0.0.1:{mtls_port}"
protocol = "SSL"
tls_cert = "{cert}"
tls_key = "{key}"
tls_client_ca = "{ca}"

[auth]
authorizer = true
super_users = ["User:admin", "User:CN=admin-client"]
plain_users_file = "{users}"
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca.path("ca.pem").display(),
        users = users.display(),
    ));
    let sasl_ssl = broker.bootstrap();
    let mtls = format!("127.0.0.1:{mtls_port}");
    let ca_pem = ca.path("ca.pem").display().to_string();
    let (password, wrong) = (password.display().to_string(), wrong.display().to_string());
    let login = |file: &str| -> Vec<String> {
        [
            "--tls-ca",
            &ca_pem,
            "--sasl-mechanism",
            "PLAIN",
            "--sasl-user",
            "admin",
            "--sasl-password-file",
            file,
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |brokers: &str, args: &[&str], extra: &[String]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(extra.iter().map(String::as_str));
        sediment(brokers, &all)
    };
    let text = |output: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };

    // SASL PLAIN over TLS: create, produce and consume back.
    let created = run(&sasl_ssl, &["topic", "create", "secured", "-p", "2"], &login(&password));
    assert!(created.status.success(), "{}", text(&created));
    let lines = ca.path("lines.txt");
    std::fs::write(&lines, "one\ntwo\nthree\n").unwrap();
    let produced = run(
        &sasl_ssl,
        &["produce", "secured", "-f", &lines.display().to_string()],
        &login(&password),
    );
    assert!(produced.status.success(), "{}", text(&produced));
    let consumed = run(&sasl_ssl, &["consume", "secured", "-n", "3"], &login(&password));
    assert!(consumed.status.success(), "{}", text(&consumed));
    let mut values: Vec<String> = String::from_utf8_lossy(&consumed.stdout).lines().map(String::from).collect();
    values.sort();
    assert_eq!(values, ["one", "three", "two"]);

    // Mutual TLS: the certificate is the principal, a super user here.
    let identity = |cert: &Path, key: &Path| -> Vec<String> {
        vec![
            "--tls-ca".into(),
            ca_pem.clone(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
            "--format".into(),
            "json".into(),
        ]
    };
    let listed = run(&mtls, &["topic", "list"], &identity(&admin_cert, &admin_key));
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("\"secured\""), "{}", text(&listed));
    // Another certificate is another principal, with no ACL: the topic
    // is not listed to it, and creating one is refused.
    let hidden = run(&mtls, &["topic", "list"], &identity(&user_cert, &user_key));
    assert!(hidden.status.success(), "{}", text(&hidden));
    assert!(
        !String::from_utf8_lossy(&hidden.stdout).contains("\"secured\""),
        "{}",
        text(&hidden)
    );
    let refused = run(&mtls, &["topic", "create", "nope"], &identity(&user_cert, &user_key));
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("CLUSTER_AUTHORIZATION_FAILED") || text(&refused).contains("TOPIC_AUTHORIZATION_FAILED"),
        "{}",
        text(&refused)
    );

    // A wrong password is Kafka's refusal (exit 1), named.
    let denied = run(&sasl_ssl, &["topic", "list"], &login(&wrong));
    assert_eq!(denied.status.code(), Some(1), "{}", text(&denied));
    let line = String::from_utf8_lossy(&denied.stderr).trim_end().to_string();
    assert!(line.contains("SASL_AUTHENTICATION_FAILED") && !line.contains('\n'), "{line}");
    // Plain text to a TLS listener: unreachable (exit 3), within the timeout.
    let started = Instant::now();
    let plain = sediment(&sasl_ssl, &["topic", "list", "--timeout-ms", "3000"]);
    assert_eq!(plain.status.code(), Some(3), "{}", text(&plain));
    assert!(text(&plain).contains("answered with TLS"), "{}", text(&plain));
    assert!(started.elapsed() < Duration::from_secs(20));
    // Bad flags: usage errors (exit 2) before any connection.
    for bad in [
        vec!["topic", "list", "--tls-cert", "x.pem"],
        vec!["topic", "list", "--tls-ca", "/no/such/ca.pem"],
        vec![
            "topic",
            "list",
            "--sasl-mechanism",
            "GSSAPI",
            "--sasl-user",
            "u",
            "--sasl-password",
            "p",
        ],
        vec!["topic", "list", "--sasl-mechanism", "PLAIN", "--sasl-user", "u"],
    ] {
        let output = sediment(&sasl_ssl, &bad);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {}", text(&output));
    }
}
