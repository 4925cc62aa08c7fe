//! https nodes: a TLS front (with a certificate from a private CA made here)
//! forwards to a `node-sim` node. With `CA_CERT_PATH` the job trusts it;
//! without, the certificate error is final and not retried.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use api_consumer::domain::ExitStatus;
use api_consumer::domain::StopReason;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::common::*;

/// A private CA and a server certificate it signed for 127.0.0.1.
struct Pki {
    ca_pem: String,
    server: Arc<ServerConfig>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

/// Terminates TLS and forwards each connection to `backend`; counts the
/// connections it accepted.
async fn tls_front(backend: SocketAddr, config: Arc<ServerConfig>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn https_node_signed_by_a_private_ca_is_trusted_with_ca_cert_path() {
    let cluster = cluster(2).await;
    let pki = pki();
    let (https, _) = tls_front(cluster.nodes()[1].addr(), pki.server.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();
    let nodes = [cluster.urls()[0].clone(), https];
    let extra = [("CA_CERT_PATH", ca_path.to_str().unwrap())];
    let report = run(&config(&nodes, "create", &["g"], &extra)).await;
    assert_eq!(report.exit_code, ExitStatus::AllAtGoal, "{report:#?}");
    assert_eq!(holders(&cluster, "g").await, [true, true]);
}

#[tokio::test]
async fn certificate_errors_are_not_retried_and_stop_the_run() {
    let cluster = cluster(2).await;
    let pki = pki();
    let (https, accepted) = tls_front(cluster.nodes()[1].addr(), pki.server.clone()).await;
    let nodes = [cluster.urls()[0].clone(), https];
    let extra = [("MAX_RETRIES", "4"), ("CONCURRENCY", "1")];
    let ids = ["g1", "g2", "g3", "g4"];
    let report = run(&config(&nodes, "create", &ids, &extra)).await;
    assert_eq!(report.exit_code, ExitStatus::RolledBack);
    let g = group(&report, "g1");
    let reason = g.reason.as_deref().unwrap_or("");
    assert!(reason.contains("TLS handshake failed"), "{reason}");
    assert!(reason.contains("certificate"), "{reason}");
    // A certificate does not fix itself: the other groups never start.
    assert_eq!(report.stop_reason, Some(StopReason::Certificate));
    assert_eq!(report.totals.not_started, 3);
    // One attempt: the first group's probe. No retry, no write anywhere.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    for id in ids {
        assert_eq!(holders(&cluster, id).await, [false, false]);
    }
    let node1 = sim_state(&cluster.urls()[0]).await;
    assert_eq!(count(&node1.requests, "create"), 0);
}
