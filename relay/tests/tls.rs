//! TLS mode (`wss://`, `https://`) with a self-signed certificate made in the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::net::TcpStream;
use std::sync::Arc;

use common::*;
use muxagent_proto::frame::Role;
use muxagent_relay::TlsFiles;
use muxagent_relay::limits::MAX_PAYLOAD_LEN;
use muxagent_relay_client::{Client, ClientConfig, ClientError, Roots};
use rustls_pki_types::{CertificateDer, ServerName};
use smol::Async;
use smol::io::{AsyncReadExt, AsyncWriteExt};

fn self_signed(dir: &std::path::Path) -> (TlsFiles, CertificateDer<'static>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    (TlsFiles { cert, key }, certified.cert.der().clone())
}

#[test]
fn wss_and_https_with_a_self_signed_certificate() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let (files, root) = self_signed(temp.path());
        let mut config = common::config(temp.path());
        config.tls = Some(files);
        let relay = TestRelay::start_with(config).await;
        assert!(relay.url.starts_with("wss://localhost:"));

        let trusting = ClientConfig {
            roots: Roots::Custom(vec![root.clone()]),
            ..ClientConfig::default()
        };
        let (d, m) = (identity(), identity());
        let connect = |id, role, host: Option<&'static str>| {
            let config = trusting.clone();
            let url = relay.url.clone();
            async move {
                within(
                    "TLS login",
                    Client::connect(&url, id, role, host.map(hostname), &config),
                )
                .await
            }
        };
        let mut device = connect(&d, Role::Device, None)
            .await
            .expect("device over wss");
        // Pair over TLS: the pending machine also connects through wss.
        let mut pending = connect(&m, Role::PendingMachine, Some("box"))
            .await
            .expect("pending over wss");
        let pairing_id = new_pairing_id();
        pending
            .send(&muxagent_proto::frame::Frame::OpenPairing(
                muxagent_proto::frame::OpenPairing {
                    pairing_id,
                    expires_at: unix_now() + 60,
                },
            ))
            .await
            .expect("open");
        recv_until(&mut pending, "opened", |f| {
            matches!(f, muxagent_proto::frame::Frame::PairingOpened(_)).then_some(())
        })
        .await;
        device
            .send(&muxagent_proto::frame::Frame::PairSend(
                muxagent_proto::frame::PairSend {
                    pairing_id,
                    payload: vec![1],
                },
            ))
            .await
            .expect("claim");
        recv_until(&mut pending, "pair recv", |f| {
            matches!(f, muxagent_proto::frame::Frame::PairRecv(_)).then_some(())
        })
        .await;
        assert_eq!(
            registry(&mut device, 1, register_entry(&d, &m, pairing_id)).await,
            Ok(())
        );
        let mut machine = connect(&m, Role::Machine, Some("box"))
            .await
            .expect("machine over wss");
        device.send(&send(&m, b"over tls")).await.expect("send");
        let (_, payload) = expect_recv(&mut machine, "routed over TLS").await;
        assert_eq!(payload, b"over tls");
        // Full-size payloads both ways: over TLS the relay reads through a small WebSocket
        // buffer (RELAY_TLS_READ_BUFFER_LEN), a frame many reads long.
        let big: Vec<u8> = (0..MAX_PAYLOAD_LEN).map(|i| (i % 251) as u8).collect();
        device.send(&send(&m, &big)).await.expect("send big");
        let (_, payload) = expect_recv(&mut machine, "a full-size payload over TLS").await;
        assert!(payload == big, "the full-size payload changed on the way");
        machine.send(&send(&d, &big)).await.expect("send big back");
        let (_, payload) = expect_recv(&mut device, "a full-size payload back").await;
        assert!(
            payload == big,
            "the full-size payload changed on the way back"
        );

        // A client that does not trust the certificate is refused in the handshake.
        let strangers = ClientConfig {
            roots: Roots::Custom(Vec::new()),
            ..ClientConfig::default()
        };
        let result = within(
            "untrusted",
            Client::connect(&relay.url, &identity(), Role::Device, None, &strangers),
        )
        .await;
        assert!(matches!(result, Err(ClientError::Tls(_))), "{result:?}");

        // HTTPS on the same port.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).expect("root");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = futures_rustls::TlsConnector::from(Arc::new(tls));
        let tcp = Async::<TcpStream>::connect(relay.addr).await.expect("tcp");
        let name = ServerName::try_from("localhost").expect("name");
        let mut stream = within("https handshake", connector.connect(name, tcp))
            .await
            .expect("tls");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("request");
        let mut response = Vec::new();
        let _ = within("https response", stream.read_to_end(&mut response)).await;
        let text = String::from_utf8_lossy(&response);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("ok\n"),
            "{text}"
        );
        relay.stop().await;
    });
}
