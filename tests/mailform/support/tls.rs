//! Test certificates made by rcgen: a CA, and server certificates it signs.
//! Shared by the peers and the PostgreSQL harness (and the benches, which
//! include this file by path).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA named `name`: what signs, and its certificate (PEM).
pub fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = ca.self_signed(&key).unwrap();
    (Issuer::new(ca, key), cert.pem())
}

/// A server certificate for `names` (host names or IP addresses), signed by
/// `issuer`: the certificate and its key (PEM).
pub fn server(issuer: &Issuer<'_, KeyPair>, names: &[&str]) -> (String, String) {
    let mut server =
        CertificateParams::new(names.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap();
    server.distinguished_name.push(DnType::CommonName, names[0]);
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}
