//! The transport listener admits only partners from the directory, and only as themselves.

use std::time::Duration;

use crate::harness::{Net, https_client, sealed_envelope as envelope};

fn transport_url_of_b(net: &Net) -> String {
    let a = gateway::config::Config::load(&net.node(0).config).unwrap();
    a.partners.iter().find(|p| p.node == "b").unwrap().transport_urls[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_certificate_cannot_speak_for_another_partner() {
    let net = Net::init(3);
    let _b = net.start(1).await;
    let url = transport_url_of_b(&net);
    let (a, c) = (net.node(0), net.node(2));
    let node_dir = |n: &gateway::network::NetworkNode| n.config.parent().unwrap().to_path_buf();
    let as_c = https_client(
        &c.ca,
        Some((&node_dir(c).join("node.pem"), &node_dir(c).join("node.key"))),
    );

    // Node c's certificate, envelope claiming node a's authority: refused, signed refusal with code.
    let forged = envelope(&net, 2, "a", &a.authorities[0], 1);
    let r = as_c.post(&url).body(forged).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body = r.text().await.unwrap();
    assert!(body.contains("<pst:Outcome>refused</pst:Outcome>"), "{body}");
    assert!(body.contains("<pst:Code>sender-mismatch</pst:Code>"), "{body}");

    // The same certificate as itself is accepted (so the refusal above was about identity).
    let honest = envelope(&net, 2, "c", &c.authorities[0], 1);
    let r = as_c.post(&url).body(honest).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("<pst:Outcome>received</pst:Outcome>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_outside_the_directory_are_refused() {
    let net = Net::init(2);
    let _b = net.start(1).await;
    let url = transport_url_of_b(&net);
    let a = net.node(0);

    // No client certificate at all: the TLS handshake fails.
    let anonymous = https_client(&a.ca, None);
    let r = anonymous
        .post(&url)
        .body(envelope(&net, 0, "a", &a.authorities[0], 1))
        .send()
        .await;
    assert!(r.is_err(), "a transport request without a client certificate must fail");

    // A certificate from the right CA that is in nobody's directory entry: refused by b.
    let other = Net::init(1);
    let dir = tempfile::tempdir().unwrap();
    let ca = load_ca(&net);
    let stranger = gateway::pki::new_node_cert(&ca, "stranger", gateway::pki::KeyType::Rsa).unwrap();
    stranger.write(dir.path(), "stranger").unwrap();
    let as_stranger = https_client(
        &a.ca,
        Some((&dir.path().join("stranger.pem"), &dir.path().join("stranger.key"))),
    );
    let r = as_stranger
        .post(&url)
        .body(envelope(&net, 0, "a", &a.authorities[0], 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("sender-mismatch"));

    // A certificate of another network's CA: the handshake fails.
    let o = other.node(0);
    let od = o.config.parent().unwrap();
    let foreign = https_client(&a.ca, Some((&od.join("node.pem"), &od.join("node.key"))));
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        foreign
            .post(&url)
            .body(envelope(&net, 0, "a", &a.authorities[0], 1))
            .send(),
    )
    .await
    .unwrap();
    assert!(
        r.is_err(),
        "a certificate from a foreign CA must not complete the handshake"
    );
}

fn load_ca(net: &Net) -> gateway::pki::Issued {
    let dir = net.dir.path();
    let cert = openssl::x509::X509::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let key = openssl::pkey::PKey::private_key_from_pem(&std::fs::read(dir.join("ca.key")).unwrap()).unwrap();
    gateway::pki::Issued { cert, key }
}
